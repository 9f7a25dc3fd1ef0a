"""What fusion buys on the host: kernel count and time of real transformer blocks compiled
with the device model's fusion and with one kernel per realized node.

    python benchmarks/fusion.py [--rounds 30]

Both variants live in one process and are timed in interleaved rounds (so machine noise hits
both alike); medians, with the eager time beside them and a correctness check of each."""
from __future__ import annotations

import argparse
import warnings

import torch
from timing import interleaved_ms

from torch_hetero.backend import collect_compiled_graphs, hetero_backend
from torch_hetero.errors import GraphFallbackWarning
from torch_hetero.tools.examples import Block, TinyGPT


def models():
    torch.manual_seed(0)
    yield "GPT-2-style block (dim 256)", Block(256, 4).eval(), (torch.randn(4, 128, 256),)
    yield "TinyGPT (2 layers, dim 128)", TinyGPT().eval(), (torch.randint(0, 512, (4, 64)),)
    from transformers import BertConfig, GPT2Config
    from transformers.models.bert.modeling_bert import BertLayer
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block
    gpt2 = GPT2Block(GPT2Config(n_embd=256, n_head=4, attn_implementation="eager"), layer_idx=0).eval()
    yield "HF GPT2Block (dim 256)", lambda x: gpt2(x)[0], (torch.randn(4, 128, 256),)
    bert = BertLayer(BertConfig(hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                                attn_implementation="eager")).eval()
    yield "HF BertLayer (dim 256)", lambda x: bert(x)[0], (torch.randn(4, 128, 256),)


def compile_variant(fn, inputs, fusion: bool):
    compiled = torch.compile(fn, backend=lambda gm, ex: hetero_backend(gm, ex, options={"fusion": fusion}))
    with torch.no_grad(), collect_compiled_graphs() as graphs:
        out = compiled(*inputs)
    return compiled, sum(len(g.kernels) for _, g, _ in graphs), out


def main():
    warnings.simplefilter("error", GraphFallbackWarning)  # it measures compiled graphs: one run eagerly is an error
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    print(f"{'model':<30}{'kernels fused/unfused':>23}{'fused ms':>10}{'unfused ms':>11}{'eager ms':>10}"
          f"{'speedup':>9}{'max err':>10}")
    for name, fn, inputs in models():
        torch._dynamo.reset()
        with torch.no_grad():
            expected = fn(*inputs)
        fused, fused_kernels, out_fused = compile_variant(fn, inputs, True)
        unfused, unfused_kernels, out_unfused = compile_variant(fn, inputs, False)
        error = max((out_fused - expected).abs().max().item(), (out_unfused - expected).abs().max().item())
        ms = interleaved_ms({"fused": fused, "unfused": unfused, "eager": fn}, inputs, args.rounds)
        print(f"{name:<30}{f'{fused_kernels}/{unfused_kernels}':>23}{ms['fused']:>10.3f}{ms['unfused']:>11.3f}"
              f"{ms['eager']:>10.3f}{ms['unfused'] / ms['fused']:>8.2f}x{error:>10.1e}")


if __name__ == "__main__":
    main()
