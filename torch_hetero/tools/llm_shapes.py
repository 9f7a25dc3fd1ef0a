"""Published LLM shapes, built with random weights for the deployment planner: the model code
is Hugging Face's, the configuration the model card's (layers, widths, heads, KV heads,
vocabulary).  Built on whatever device is current, so under the planner (the meta device)
a 70B model takes no memory.

    python -m torch_hetero plan torch_hetero.tools.llm_shapes:llama_3_8b --devices h100,mi300x ...

Each factory takes ``batch_size`` and ``seq_len`` (the planner's sweep) and returns the model
in bf16 with a batch of token ids."""
from __future__ import annotations

import torch

# name → (transformers config class, its arguments), from each model's published config.json
SHAPES = {
    # Llama 1/2 7B (meta-llama/Llama-2-7b-hf): 32 layers, 4096 wide, 32 heads, 11008 MLP
    "llama-2-7b": ("LlamaConfig", dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                       max_position_embeddings=4096)),
    # meta-llama/Llama-2-13b-hf
    "llama-2-13b": ("LlamaConfig", dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824,
                                        num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
                                        max_position_embeddings=4096)),
    # meta-llama/Llama-2-70b-hf: grouped-query attention, 8 KV heads
    "llama-2-70b": ("LlamaConfig", dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672,
                                        num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                                        max_position_embeddings=4096)),
    # meta-llama/Meta-Llama-3-8B
    "llama-3-8b": ("LlamaConfig", dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                       max_position_embeddings=8192, rope_theta=500000.0)),
    # EleutherAI/gpt-j-6b
    "gpt-j-6b": ("GPTJConfig", dict(vocab_size=50400, n_embd=4096, n_layer=28, n_head=16, rotary_dim=64,
                                    n_positions=2048)),
}


def build(name: str, batch_size: int = 1, seq_len: int = 128, layers: int | None = None):
    """(model in bf16, (token ids [batch_size, seq_len],)); ``layers`` overrides the depth."""
    import transformers
    config_class, arguments = SHAPES[name]
    arguments = dict(arguments)
    if layers is not None:
        arguments["num_hidden_layers" if "num_hidden_layers" in arguments else "n_layer"] = layers
    config = getattr(transformers, config_class)(**arguments)
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    return model.eval(), (torch.randint(0, config.vocab_size, (batch_size, seq_len)),)


def llama_2_7b(batch_size: int = 1, seq_len: int = 128):
    return build("llama-2-7b", batch_size, seq_len)


def llama_2_70b(batch_size: int = 1, seq_len: int = 128):
    return build("llama-2-70b", batch_size, seq_len)


def llama_3_8b(batch_size: int = 1, seq_len: int = 128):
    return build("llama-3-8b", batch_size, seq_len)


def gpt_j_6b(batch_size: int = 1, seq_len: int = 128):
    return build("gpt-j-6b", batch_size, seq_len)
