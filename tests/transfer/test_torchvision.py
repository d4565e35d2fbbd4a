"""--from torchvision:NAME offline: a random state dict at torchvision's cache path, loaded by
torchvision's own weights API (the real loading code), then imported into convscope's model."""
from __future__ import annotations

import json

import pytest
import torch
import torchvision

from convscope.cli import main
from convscope.transfer.sources import cache_path, from_torchvision


@pytest.fixture
def cached_resnet18(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    torch.manual_seed(3)
    reference = torchvision.models.resnet18()
    with torch.no_grad():
        for m in reference.modules():  # non-default BN statistics, so a dropped buffer would show
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = cache_path(weights)
    assert path.parent == tmp_path / "torch" / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    return reference.eval()


def test_torchvision_weights_imported_into_convscope(cached_resnet18):
    src = from_torchvision("resnet18")
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(src.model(x), cached_resnet18(x), rtol=1e-4, atol=1e-4)
    assert len(src.classes) == 1000 and src.input_size == (3, 224, 224)
    assert src.normalization["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert src.preprocessing["torchvision"]["weights"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_finetune_command_from_torchvision(cached_resnet18, tmp_path, capsys):
    out = tmp_path / "r18"
    code = main(["finetune", "--from", "torchvision:resnet18", "--data", "synthetic", "--image-size", "16",
                 "--freeze", "all", "--epochs", "1", "--batch-size", "100", "--threads", "1", "--out", str(out),
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frozen"] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert result["input_adaptation"].startswith("3->1")
    config = json.loads((out / "config.json").read_text())
    assert config["finetune"]["source_preprocessing"]["torchvision"]["crop_size"] == [224]
    from convscope.train.checkpoint import load

    model, _ = load(out)
    ref_conv1 = cached_resnet18.conv1.weight.sum(1, keepdim=True)  # frozen: the summed filters, bit for bit
    assert torch.equal(model.conv1.weight, ref_conv1)


def test_unknown_torchvision_names_are_clear(tmp_path, capsys):
    assert main(["finetune", "--from", "torchvision:resnet19", "--data", "synthetic", "--out", str(tmp_path / "x")]) == 2
    assert "no model 'resnet19'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has no entry 'IMAGENET9'"):
        from_torchvision("resnet18:IMAGENET9")
