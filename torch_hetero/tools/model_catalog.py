"""The coverage run's model list (``benchmarks/coverage.py``): Hugging Face ``transformers``
architectures built from small configs with random weights (no downloads), ``timm`` image
models (``pretrained=False``, small inputs) and the recommendation models
(``tools/recommenders``).  ``build(name)`` gives a ``model_zoo.ZooModel``: the module in
eval mode, example inputs, and the main tensor of its output."""
from __future__ import annotations

import dataclasses
import os
import sys

import torch

from . import recommenders
from .model_zoo import ZooModel

TEXT = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=128)
IMAGE = dict(image_size=32, patch_size=8, num_channels=3)
BATCH, TOKENS = 2, 16
TIMM_SITE = os.path.join(sys.prefix, "timm-site")   # see _import_timm


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    suite: str                  # "transformers" | "timm" | "recsys"
    family: str                 # encoder, decoder, encoder-decoder, vision, audio, cnn, transformer, recsys
    spec: dict = dataclasses.field(default_factory=dict)   # config overrides (transformers), kwargs (timm)
    inputs: str = "text"        # text, seq2seq, image, audio, features


def _hf(model_type, family, inputs="text", text=True, **overrides):
    """``text``: the transformer sizes (``TEXT``) apply, as for a ViT; a CNN's config takes the
    image's alone.  An override of None removes a base key the config refuses."""
    base = {**(TEXT if text else {}), **(IMAGE if inputs == "image" else {})}
    return Entry(model_type, "transformers", family,
                 {k: v for k, v in {**base, **overrides}.items() if v is not None}, inputs)


def _timm(name, family="cnn", **kwargs):
    """``kwargs`` go to ``timm.create_model`` except ``input_size`` (default: ``img_size``, else 64)."""
    return Entry(name, "timm", family, kwargs, "image")


TRANSFORMERS = [
    # encoders
    _hf("bert", "encoder"), _hf("roberta", "encoder"), _hf("distilbert", "encoder", dim=64, n_layers=2, n_heads=4,
                                                           hidden_dim=128),
    _hf("albert", "encoder", embedding_size=32), _hf("electra", "encoder", embedding_size=32),
    _hf("deberta", "encoder"), _hf("deberta-v2", "encoder"), _hf("xlm-roberta", "encoder"),
    _hf("mpnet", "encoder"), _hf("convbert", "encoder"), _hf("roformer", "encoder"),
    _hf("mobilebert", "encoder", embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32,
        num_feedforward_networks=1),
    _hf("megatron-bert", "encoder"), _hf("esm", "encoder", pad_token_id=1, mask_token_id=2),
    _hf("data2vec-text", "encoder"), _hf("ernie", "encoder"), _hf("rembert", "encoder", input_embedding_size=32,
                                                               output_embedding_size=32),
    _hf("squeezebert", "encoder", embedding_size=64, q_groups=2, k_groups=2, v_groups=2, post_attention_groups=2,
        intermediate_groups=2, output_groups=2),
    _hf("big_bird", "encoder", attention_type="original_full"),
    _hf("xlm", "encoder", emb_dim=64, n_layers=2, n_heads=4),
    # decoders
    _hf("gpt2", "decoder"), _hf("gpt_neo", "decoder", attention_types=[[["global", "local"], 1]], window_size=8),
    _hf("gptj", "decoder", rotary_dim=8), _hf("gpt_neox", "decoder"), _hf("opt", "decoder", word_embed_proj_dim=64,
                                                                         ffn_dim=128),
    _hf("bloom", "decoder", n_head=4), _hf("llama", "decoder", num_key_value_heads=2),
    _hf("mistral", "decoder", num_key_value_heads=2), _hf("mixtral", "decoder", num_key_value_heads=2,
                                                          num_local_experts=4, num_experts_per_tok=2),
    _hf("qwen2", "decoder", num_key_value_heads=2), _hf("qwen3", "decoder", num_key_value_heads=2, head_dim=16),
    _hf("phi", "decoder"), _hf("phi3", "decoder", pad_token_id=0), _hf("gemma", "decoder", head_dim=16,
                                                                        num_key_value_heads=1),
    _hf("gemma2", "decoder", head_dim=16, num_key_value_heads=2, sliding_window=8),
    _hf("falcon", "decoder"), _hf("codegen", "decoder", rotary_dim=8, n_ctx=128), _hf("gpt_bigcode", "decoder"),
    _hf("olmo", "decoder"), _hf("starcoder2", "decoder", num_key_value_heads=2), _hf("biogpt", "decoder"),
    _hf("xglm", "decoder", d_model=64, ffn_dim=128, attention_heads=4), _hf("granite", "decoder"),
    _hf("cohere", "decoder"), _hf("mpt", "decoder", d_model=64, n_heads=4, n_layers=2, expansion_ratio=2),
    # encoder-decoders
    _hf("t5", "encoder-decoder", "seq2seq", d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
    _hf("bart", "encoder-decoder", "seq2seq", d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    _hf("mbart", "encoder-decoder", "seq2seq", d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    _hf("pegasus", "encoder-decoder", "seq2seq", d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    _hf("marian", "encoder-decoder", "seq2seq", d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        decoder_start_token_id=0, pad_token_id=0),
    _hf("m2m_100", "encoder-decoder", "seq2seq", d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    _hf("blenderbot", "encoder-decoder", "seq2seq", d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    # vision
    _hf("vit", "vision", "image"), _hf("deit", "vision", "image"), _hf("beit", "vision", "image"),
    _hf("dinov2", "vision", "image"), _hf("convnext", "vision", "image", text=False, image_size=64, hidden_sizes=[16, 32, 64, 128],
                                          depths=[1, 1, 1, 1]),
    _hf("swin", "vision", "image", text=False, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=2, patch_size=4),
    _hf("resnet", "vision", "image", text=False, embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
    _hf("regnet", "vision", "image", text=False, embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
        groups_width=8),
    _hf("mobilenet_v2", "vision", "image", text=False),
    _hf("poolformer", "vision", "image", text=False, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
    _hf("segformer", "vision", "image", text=False, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
        num_attention_heads=[1, 2, 4, 8], decoder_hidden_size=64),
    # audio
    _hf("wav2vec2", "audio", "audio", conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2],
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4),
    _hf("hubert", "audio", "audio", conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2],
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4),
    _hf("whisper", "audio", "features", d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=16,
        max_source_positions=16, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None),
]

TIMM = [_timm(n) for n in (
    "resnet18", "resnet50d", "resnext26ts", "seresnext26d_32x4d", "regnetx_002", "regnety_004", "densenet121",
    "mobilenetv2_050", "mobilenetv3_small_050", "efficientnet_b0", "efficientnet_lite0", "mnasnet_050",
    "ghostnet_050", "rexnet_100", "hrnet_w18_small", "dla34", "dpn48b", "cspresnet50", "darknet17", "vgg11",
    "inception_v3", "xception41", "convnext_atto", "convnextv2_atto", "repvgg_a0", "res2net50_14w_8s",
    "selecsls42b", "tinynet_e", "lcnet_050", "fbnetc_100", "spnasnet_100", "mixnet_s", "dm_nfnet_f0")
    if n != "inception_v3"] + [_timm("inception_v3", input_size=96)] + \
    [_timm(n, "transformer", img_size=64) for n in (
        "vit_tiny_patch16_224", "deit_tiny_patch16_224", "levit_128s", "coat_lite_tiny",
        "pit_ti_224")] + \
    [_timm("swin_tiny_patch4_window7_224", "transformer", img_size=64, window_size=4)] + \
    [_timm(n, "transformer") for n in ("mobilevit_xxs", "poolformer_s12", "crossvit_tiny_240")]

RECSYS = [Entry("dlrm", "recsys", "recsys"), Entry("two_tower", "recsys", "recsys")]
ENTRIES = {e.name: e for e in TRANSFORMERS + TIMM + RECSYS}


def _import_timm():
    """timm, which imports torchvision.  The only torchvision served for torch 2.13 here is the
    CUDA build (0.28.0): its C++ ops cannot load on the CPU torch, and its Python part then stops
    at two fake-kernel registrations that, unlike the others, do not check for the ops (nms,
    qnms).  So ``make`` installs both into ``TIMM_SITE``, outside the environment (where that
    torchvision would break ``transformers``' imports), and here, where that happens, the two
    schemas are declared and torchvision is imported again without its ops (no model here calls
    them).  A timm and torchvision of the environment's own come first and are left alone."""
    if os.path.isdir(TIMM_SITE) and TIMM_SITE not in sys.path:
        sys.path.append(TIMM_SITE)
    try:
        import timm
        return timm
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")]:
        del sys.modules[name]
    torch.library.define("torchvision::nms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    torch.library.define("torchvision::qnms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import timm
    return timm


def _no_dropout(config) -> None:
    """Every dropout, layer drop and training-time masking off: a training step is deterministic."""
    for key, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in key or key.endswith(("pdrop", "layerdrop", "drop_path_rate"))
                                         or key.startswith("mask_") and key.endswith("_prob")):
            setattr(config, key, 0.0)


class _Keywords(torch.nn.Module):
    """A model called with keyword tensors, taking them positionally (as a compiled call passes them)."""

    def __init__(self, model, keys):
        super().__init__()
        self.model, self.keys = model, tuple(keys)

    def forward(self, *tensors):
        return self.model(**dict(zip(self.keys, tensors)))


def _main(out):
    return out.last_hidden_state if getattr(out, "last_hidden_state", None) is not None else out[0]


def _build_transformers(entry: Entry):
    import transformers
    config = transformers.AutoConfig.for_model(entry.name, **entry.spec)
    _no_dropout(config)
    model = transformers.AutoModel.from_config(config)
    vocab = getattr(config, "vocab_size", 256) or 256
    ids = lambda: torch.randint(3, min(vocab, 256), (BATCH, TOKENS))
    inputs = {"text": lambda: {"input_ids": ids()},
              "seq2seq": lambda: {"input_ids": ids(), "decoder_input_ids": ids()},
              "image": lambda: {"pixel_values": torch.randn(BATCH, 3, config.image_size, config.image_size)},
              "audio": lambda: {"input_values": torch.randn(BATCH, 1600)},
              "features": lambda: {"input_features": torch.randn(BATCH, config.num_mel_bins,
                                                                 2 * config.max_source_positions),
                                   "decoder_input_ids": ids()}}[entry.inputs]()
    return _Keywords(model, inputs), tuple(inputs.values()), _main


def _build_timm(entry: Entry):
    timm = _import_timm()
    kwargs = {k: v for k, v in entry.spec.items() if k != "input_size"}
    try:  # dropout and stochastic depth off, where the model takes them (some default to 0.1 or 0.2)
        model = timm.create_model(entry.name, pretrained=False, num_classes=16, drop_rate=0.0, drop_path_rate=0.0,
                                  **kwargs)
    except TypeError:   # no stochastic depth
        model = timm.create_model(entry.name, pretrained=False, num_classes=16, drop_rate=0.0, **kwargs)
    side = entry.spec.get("input_size", entry.spec.get("img_size", 64))
    return model, (torch.randn(BATCH, 3, side, side),), lambda out: out


def _build_recsys(entry: Entry):
    model, inputs = {"dlrm": recommenders.dlrm_example, "two_tower": recommenders.two_tower_example}[entry.name]()
    return model, inputs, lambda out: out


def build(name: str, seed: int = 0) -> ZooModel:
    entry = ENTRIES[name]
    torch.manual_seed(seed)
    model, inputs, main = {"transformers": _build_transformers, "timm": _build_timm,
                           "recsys": _build_recsys}[entry.suite](entry)
    return ZooModel(name, model.eval(), inputs, main)
