"""Real model code (torch_hetero.tools.model_zoo: Hugging Face models from small configs) compiled
strictly — no graph may fall back to eager — and checked against eager: forward, and for a
few a training step's gradients.  These caught what unit cases did not (LLaMA's attention
over rotary-embedded heads)."""
import copy

import pytest
import torch

from torch_hetero.tools import model_zoo
from utils import compile_hetero

pytest.importorskip("transformers")


@pytest.mark.parametrize("name", model_zoo.NAMES)
def test_model_inference_matches_eager(name):
    zoo = model_zoo.build(name)
    torch._dynamo.reset()
    with torch.no_grad():
        expected = zoo.main_output(zoo.model(*zoo.inputs))
        actual = zoo.main_output(compile_hetero(zoo.model, native=True)(*zoo.inputs))
    torch.testing.assert_close(actual, expected, atol=zoo.tolerance, rtol=zoo.tolerance)


@pytest.mark.parametrize("name", ["llama", "resnet"])
def test_model_training_step_matches_eager(name):
    zoo = model_zoo.build(name)
    model = zoo.model.train()
    copy_ = copy.deepcopy(model)
    torch._dynamo.reset()
    for m, run in ((model, model), (copy_, compile_hetero(copy_, native=True))):
        zoo.main_output(run(*zoo.inputs)).float().pow(2).mean().backward()
    scale = max(p.grad.abs().max() for p in model.parameters() if p.grad is not None)
    for (name_, p), q in zip(model.named_parameters(), copy_.parameters()):
        if p.grad is None:
            assert q.grad is None or not q.grad.any(), name_
        else:
            torch.testing.assert_close(q.grad / scale, p.grad / scale, atol=1e-5, rtol=1e-4, msg=name_)
