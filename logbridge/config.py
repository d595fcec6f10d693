"""Config loading shared by every command: YAML → a validated pydantic model.

Every problem in a file is collected and reported at once, each naming the file, the key
(``destinations[0].roll.max_bytes``) and what was expected, so that an operator fixes a file
in one pass. Unknown keys are rejected: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from .errors import ConfigError
from .units import parse_duration, parse_size

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in config as ``64MiB``, ``1MB`` or a plain number."""

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in config as ``200ms``, ``5s``, ``5m`` or a plain number."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ModelT = TypeVar("ModelT", bound=BaseModel)

UNION_TAG = "type="
"""Prefix of a discriminated union's tags: pydantic puts the tag in an error's location, and a
key path names what the operator wrote (``destinations[0].url``), so `_key_path` drops it."""


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", UNION_TAG)) or part in ("tagged-union",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def validation_problems(exc: ValidationError) -> list[str]:
    """One readable line per pydantic error: ``key.path: what was expected``."""
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the documented keys)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(f"{_key_path(err['loc'])}: {msg}")
    return problems


def validate(data: Any, model: type[ModelT], source: str = "<config>") -> ModelT:
    """Validate already-parsed data; raise one `ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level", source=source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ConfigError(
            f"{source}: invalid configuration:\n" + "\n".join(f"  {p}" for p in problems),
            source=source,
            problems=problems,
        ) from None


def load_yaml(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text", source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}", source=str(path)) from None


def load_config(path: str | os.PathLike[str], model: type[ModelT]) -> ModelT:
    """Read a YAML file and validate it against ``model``."""
    return validate(load_yaml(path), model, source=str(path))


def resolve_secret(*, env: str | None, file: str | None, what: str) -> str:
    """Read a secret from an environment variable or a file; the value itself is never logged."""
    if env:
        value = os.environ.get(env)
        if value is None or not value.strip():
            raise ConfigError(f"{what}: environment variable {env} is not set or empty")
        return value.strip()
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read token file {file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{what}: token file {file} is empty")
        return value
    raise ConfigError(f"{what}: set token_env or token_file")
