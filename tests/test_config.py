"""One override path: the CLI's `--set` / `--train-set` text and the API's keyword options are checked by
the same function, so a misspelt option gives the same error on both paths."""
import pytest
import torch

import selfsup.api as api
from selfsup.cli import main
from selfsup.config import make_config, parse_overrides
from selfsup.data.base import DataSpec, ImageData
from selfsup.errors import SelfSupError
from selfsup.methods.base import METHODS, MethodConfig, build_method
from selfsup.train import TrainConfig


def error_of(call) -> str:
    with pytest.raises(SelfSupError) as caught:
        call()
    return str(caught.value)


def cli_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip().removeprefix("selfsup: error: ")


def test_a_misspelt_method_option_gives_the_same_error_from_the_cli_and_the_api(capsys):
    api_message = error_of(lambda: build_method("rotation", DataSpec(), lr_rate=0.1))
    assert cli_error(["pretrain", "rotation", "--set", "lr_rate=0.1"], capsys) == api_message
    assert error_of(lambda: parse_overrides(["lr-rate=0.1"], METHODS.get("rotation").Config)) == api_message
    assert "unknown option of" in api_message and "Did you mean 'lr'" in api_message


def test_a_misspelt_training_option_gives_the_same_error_from_the_cli_and_the_api(capsys):
    pool = ImageData(torch.zeros(8, 1, 28, 28, dtype=torch.uint8))
    api_message = error_of(lambda: api.pretrain("rotation", pool=pool, train={"epoch": 1}))
    assert cli_error(["pretrain", "rotation", "--train-set", "epoch=1"], capsys) == api_message
    assert api_message == error_of(lambda: make_config(TrainConfig, {"epoch": 1}))
    assert "TrainConfig" in api_message and "Did you mean 'epochs'" in api_message


def test_overrides_are_typed_from_the_fields_and_bad_values_say_which_option():
    options = parse_overrides(["lr=0.5", "betas=[0.8, 0.9]", 'encoder_kwargs={"widths": [8, 8, 8]}'], MethodConfig)
    assert options == {"lr": 0.5, "betas": (0.8, 0.9), "encoder_kwargs": {"widths": [8, 8, 8]}}
    assert make_config(MethodConfig, options).betas == (0.8, 0.9)
    assert "lr='fast'" in error_of(lambda: parse_overrides(["lr=fast"], MethodConfig))
    assert "KEY=VALUE" in error_of(lambda: parse_overrides(["lr"], MethodConfig))


def test_encoder_kwargs_default_to_a_fresh_empty_dict_and_none_still_means_none():
    a, b = MethodConfig(), MethodConfig(encoder_kwargs=None)
    assert a.encoder_kwargs == {} and b.encoder_kwargs == {} and a.encoder_kwargs is not MethodConfig().encoder_kwargs
