"""The CLI's defaults and help texts are artylyze.options', so they cannot drift apart."""

from __future__ import annotations

import subprocess
import sys
from enum import Enum

import pytest
import typer
from typer.core import TyperOption

from artylyze import options
from artylyze.cli.main import app


def _commands(cmd=None, path=()):
    """(command path, click command) for every leaf command of the app."""
    cmd = cmd if cmd is not None else typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(_commands())


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def _has_default(value) -> bool:
    """A default that is a choice made for the user (not None, False or empty)."""
    return not (value is None or value is False or value == () or value == [])


def test_every_command_with_defaults_is_listed() -> None:
    assert set(options.COMMANDS) <= set(COMMANDS)
    for name, cmd in COMMANDS.items():
        params = [p.name for p in cmd.params
                  if isinstance(p, TyperOption) and _has_default(p.default)]
        if params:
            assert name in options.COMMANDS, f"{name} has defaults {params} outside options.py"


@pytest.mark.parametrize("name", sorted(options.COMMANDS))
def test_cli_defaults_and_help_are_the_options(name: str) -> None:
    specs = options.specs(options.COMMANDS[name])
    params = {p.name: p for p in COMMANDS[name].params}
    for param, spec in specs.items():
        assert param in params, f"{name}: options.py names {param}, the CLI has no such option"
        assert _plain(params[param].default) == spec.default, f"{name} --{param}"
        assert params[param].help == spec.help, f"{name} --{param}"
    for param in params.values():
        if isinstance(param, TyperOption) and _has_default(param.default):
            assert param.name in specs, f"{name} --{param.name}: its default is not in options.py"


def test_library_defaults_are_the_options() -> None:
    from artylyze import imaging
    from artylyze.explain.saliency import SaliencyOptions
    from artylyze.export import onnx_export, quantize
    from artylyze.metadata import records
    from artylyze.metadata.sidecar import SidecarOptions
    from artylyze.serve.options import ServeOptions

    assert options.Tag.max_pixels.default == imaging.DEFAULT_MAX_PIXELS
    assert options.Tag.max_bytes.default == imaging.DEFAULT_MAX_BYTES
    assert records.DEFAULT_ID_COLUMN == options.ID_COLUMN
    assert records.DEFAULT_FILE_COLUMN == options.FILE_COLUMN
    assert options.Export.opset.default == onnx_export.DEFAULT_OPSET
    assert options.Export.check_count.default == onnx_export.CHECK_COUNT
    assert options.Export.calibration_count.default == onnx_export.CALIBRATION_COUNT
    assert options.Export.max_style_drop.default == quantize.MAX_STYLE_DROP
    s = SaliencyOptions()
    assert (s.method, s.masks, s.seed) == (options.Explain.method.default,
                                           options.Explain.masks.default,
                                           options.Explain.seed.default)
    w = SidecarOptions()
    assert (w.min_score, w.creator_min_score, w.creator, w.date_max_width) == (
        options.Write.min_score.default, options.Write.creator_min_score.default,
        options.Write.suggest_creator.default, options.Write.date_max_width.default)
    d = ServeOptions()
    assert d.max_upload_bytes == options.Serve.max_upload_mb.default * options.MIB
    assert (d.host, d.port, d.workers, d.max_pixels, d.timeout_s) == (
        options.Serve.host.default, options.Serve.port.default, options.Serve.workers.default,
        options.Serve.max_pixels.default, options.Serve.timeout.default)


def test_options_import_nothing_heavy() -> None:
    script = ("import sys, artylyze.options; "
              "print(sorted(m for m in ('numpy', 'onnxruntime', 'torch', 'pyarrow') "
              "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
