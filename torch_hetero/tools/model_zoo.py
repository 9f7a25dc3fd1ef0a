"""Real model code to compile: Hugging Face ``transformers`` models built from small configs
with random weights (no downloads), plus an MLP.  The benchmark suite, tests/test_models.py and
the demo (GPT-2) run these, so that numbers come from the code users run, not from toy blocks
written for the compiler.

``build(name)`` returns a ``ZooModel``: the module (eval mode), example inputs, and how to
take the main tensor out of its output.  Dropout is off in every config, so a training step
is deterministic and can be compared with eager."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

NAMES = ("gpt2", "bert", "llama", "vit", "resnet", "mobilenet_v2", "convnext", "qwen3_moe", "mlp")
# Not in the suite's default run, and never tuned on: a speed claim made on NAMES is checked
# on these (``benchmarks/suite.py --models efficientnet,regnet``).
HELD_OUT = ("efficientnet", "regnet")


@dataclasses.dataclass
class ZooModel:
    name: str
    model: torch.nn.Module
    inputs: tuple
    main_output: Callable[[object], torch.Tensor]
    tolerance: float = 1e-4     # compiled vs eager, absolute and relative (bfloat16 models: looser)

    @property
    def parameters_m(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e6


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise SystemExit("the Hugging Face models need transformers: pip install -e '.[demo]' "
                         f"[{error}]") from None
    return transformers


def _gpt2(t):
    config = t.GPT2Config(vocab_size=2048, n_positions=256, n_embd=256, n_layer=2, n_head=4,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                          eos_token_id=0, use_cache=False)
    return t.GPT2LMHeadModel(config), (torch.randint(0, 2048, (2, 128)),), lambda out: out.logits


def _bert(t):
    config = t.BertConfig(vocab_size=2048, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=1024, max_position_embeddings=256, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    return t.BertModel(config), (torch.randint(0, 2048, (2, 128)),), lambda out: out.last_hidden_state


def _llama(t):
    config = t.LlamaConfig(vocab_size=2048, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=688, max_position_embeddings=256,
                           use_cache=False)
    return t.LlamaForCausalLM(config), (torch.randint(0, 2048, (2, 128)),), lambda out: out.logits


def _vit(t):
    config = t.ViTConfig(image_size=64, patch_size=8, hidden_size=256, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=1024, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    return t.ViTModel(config, add_pooling_layer=False), (torch.randn(4, 3, 64, 64),), \
        lambda out: out.last_hidden_state


def _resnet(t):
    config = t.ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
                            layer_type="basic")
    return t.ResNetModel(config), (torch.randn(4, 3, 64, 64),), lambda out: out.pooler_output


def _mobilenet_v2(t):
    """Depthwise-separable blocks with ReLU6 and TensorFlow's "same" padding (an explicit pad
    before each strided convolution), as the published MobileNetV2 checkpoints are built."""
    config = t.MobileNetV2Config(depth_multiplier=0.5, image_size=96, tf_padding=True, classifier_dropout_prob=0.0)
    return _batch_norm_calibrated(t.MobileNetV2Model(config), torch.randn(4, 3, 96, 96)), \
        (torch.randn(4, 3, 96, 96),), lambda out: out.pooler_output


def _convnext(t):
    """7x7 depthwise convolutions, channels-last LayerNorm, GELU MLPs and layer scale."""
    config = t.ConvNextConfig(hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1], image_size=64)
    return t.ConvNextModel(config), (torch.randn(4, 3, 64, 64),), lambda out: out.pooler_output


def _efficientnet(t):
    """MBConv blocks: depthwise convolutions (3x3 and 5x5, TF "same" padding), SiLU, squeeze
    and excitation (a global average pool gating the channels), a global ``AvgPool2d`` head."""
    config = t.EfficientNetConfig(width_coefficient=0.5, depth_coefficient=0.5, image_size=96, hidden_dim=640,
                                  dropout_rate=0.0, drop_connect_rate=0.0)
    return _batch_norm_calibrated(t.EfficientNetModel(config), torch.randn(4, 3, 96, 96)), \
        (torch.randn(4, 3, 96, 96),), lambda out: out.pooler_output


def _regnet(t):
    """RegNetX-style: grouped 3x3 convolutions (16 channels a group) in residual bottlenecks."""
    config = t.RegNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1],
                            groups_width=16, layer_type="x")
    return _batch_norm_calibrated(t.RegNetModel(config), torch.randn(4, 3, 64, 64)), \
        (torch.randn(4, 3, 64, 64),), lambda out: out.pooler_output


def _batch_norm_calibrated(model, batch):
    """Batch-norm statistics (and unit scales) from one training-mode pass, as a trained
    network has them: with the configs' initial scales of about 0.02 the activations of a deep
    CNN vanish (EfficientNet's output is exactly 0, MobileNetV2's about 1e-23), and nothing is
    left to compare."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for module in norms:
        torch.nn.init.ones_(module.weight)
        module.momentum = None   # the running statistics become this batch's
    with torch.no_grad():
        model.train()(batch)
    for module, momentum in zip(norms, momenta):
        module.momentum = momentum
    return model


def _qwen3_moe(t):
    """An MoE decoder whose experts run as grouped GEMMs (``experts_implementation``): the
    router's softmax, top-2 and renormalization, tokens sorted by expert, ``histc`` counts and
    ``torch._grouped_mm`` — one graph with static shapes.  bfloat16, as ``_grouped_mm`` is
    under torch.compile."""
    config = t.Qwen3MoeConfig(vocab_size=1024, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=32, intermediate_size=256, moe_intermediate_size=64,
                              num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, max_position_embeddings=128,
                              use_cache=False, experts_implementation="grouped_mm")
    return t.Qwen3MoeForCausalLM(config).to(torch.bfloat16), (torch.randint(0, 1024, (2, 32)),), \
        lambda out: out.logits


def _mlp(_):
    model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512))
    return model, (torch.randn(256, 512),), lambda out: out


_BUILDERS = {"gpt2": _gpt2, "bert": _bert, "llama": _llama, "vit": _vit, "resnet": _resnet,
             "mobilenet_v2": _mobilenet_v2, "convnext": _convnext, "qwen3_moe": _qwen3_moe,
             "mlp": _mlp, "efficientnet": _efficientnet, "regnet": _regnet}


def build(name: str, seed: int = 0) -> ZooModel:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(NAMES + HELD_OUT)}")
    torch.manual_seed(seed)
    model, inputs, main_output = _BUILDERS[name](None if name == "mlp" else _transformers())
    return ZooModel(name, model.eval(), inputs, main_output, 2e-2 if name == "qwen3_moe" else 1e-4)
