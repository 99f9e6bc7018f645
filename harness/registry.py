"""The model registry: a builder function registered under a name, with its training recipe.

Usage (a plugin module in models/, or any package exposing the `harness.models` entry point):

    from harness.registry import register_model

    @register_model("cnn_small", family="cnn", description="two conv blocks",
                    recipe=dict(epochs=12, batch_size=128, learning_rate=2e-3, augment=0.5))
    def cnn_small(width: int = 32, dropout: float = 0.3, *, input_shape=(28, 28, 1), classes=10):
        ...  # return an uncompiled keras.Model: float32 [N,H,W,C] pixels 0..255 -> softmax [N,K]

The shape: a builder that declares `input_shape` (height, width, channels) and `classes` is given
the competition's (harness.core.competition); one that does not is built as it is and must then
match them (a model made for 28x28x1 and 10 classes is refused elsewhere with one clear line). A
builder that cannot build for a shape (images smaller than its pooling allows) raises ModelError.

`list_models("cnn*")` filters with wildcards, `get_model(name)` finds one (an unknown name lists the
known ones and the closest match), `ModelSpec.params()` merges builder defaults with the recipe and
validates overrides. Ideas from timm's registry (decorator, wildcards, tiny variants) and
torchvision's small API (a duplicate name is an error).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.core.errors import ModelError

ENTRY_POINT_GROUP = "harness.models"
SHAPE_ARGS = ("input_shape", "classes")  # given by the harness, never hyperparameters
DIGITS_SHAPE = (28, 28, 1)

# Training recipe fields every model has; a plugin overrides any of them in `recipe=`.
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 10,            # full training epochs per fold
    "quick_epochs": 3,       # epochs under `harness run --quick`
    "batch_size": 128,
    "optimizer": "adam",     # adam | adamw | sgd
    "learning_rate": 1e-3,   # peak learning rate
    "schedule": "cosine",    # cosine (decay to 1% over training) | constant
    "weight_decay": 0.0,     # adamw only
    "label_smoothing": 0.0,
    "augment": 0.0,          # strength 0..1: rotation 12 deg, zoom 12 %, shift 12 % at 1.0
    "elastic": 0.0,          # elastic distortion on top of augment: its largest displacement in pixels; 0 = off
    "ema": 0.0,              # momentum of an EMA of the weights (e.g. 0.999); 0 = off
    "precision": "float32",  # float32 | bfloat16 (mixed_bfloat16 training where the CPU has bf16)
    "batch_norm": "fused",   # fused (TensorFlow's fused kernel while training: harness.train.batchnorm) | keras
}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it, how to train it, and where it came from."""

    name: str
    builder: Callable[..., Any]
    family: str
    description: str
    recipe: dict[str, Any]
    search_space: dict[str, Any] = field(default_factory=dict)
    tiny: bool = False
    source: str = "?"
    # Under a time limit (harness.run.planner): the fewest epochs worth training (default: the
    # recipe's quick_epochs; the most is the recipe's epochs), and the OOF errors a second bag of
    # the model is expected to remove from the ensemble (0: it is never bagged for time left).
    min_epochs: int | None = None
    bag_gain: float = 0.0

    def builder_defaults(self) -> dict[str, Any]:
        sig = inspect.signature(self.builder)
        return {n: p.default for n, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and n not in SHAPE_ARGS}

    @property
    def takes_shape(self) -> bool:
        """Whether the builder declares `input_shape` and `classes` (else it builds one shape)."""
        return all(n in inspect.signature(self.builder).parameters for n in SHAPE_ARGS)

    def params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Builder defaults + recipe, with non-None `overrides` applied (unknown names are errors)."""
        params = {**self.builder_defaults(), **self.recipe}
        for key, value in (overrides or {}).items():
            if value is None:  # an unset flag keeps the model's own default (as timm does)
                continue
            if key not in params:
                close = difflib.get_close_matches(key, params, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ModelError(f"model {self.name!r} has no parameter {key!r} "
                                 f"(known: {', '.join(sorted(params))}){hint}")
            default = params[key]
            if isinstance(default, bool) or default is None:
                params[key] = value
            elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
                raise ModelError(f"parameter {key!r} of {self.name!r} must be a number, got {value!r}")
            else:
                params[key] = type(default)(value) if isinstance(default, (int, float, str)) else value
        return params

    def build(self, params: dict[str, Any] | None = None, *, shape: tuple[int, int, int] = DIGITS_SHAPE,
              classes: int = 10) -> Any:
        """An uncompiled keras.Model built with the builder's share of `params` for images of
        `shape` (height, width, channels) and `classes` classes."""
        params = params or self.params()
        kwargs = {k: params[k] for k in self.builder_defaults() if k in params}
        if self.takes_shape:
            kwargs.update(input_shape=tuple(shape), classes=int(classes))
        try:
            model = self.builder(**kwargs)
        except ModelError as e:  # e.g. images smaller than the architecture's downsampling allows
            raise ModelError(f"model {self.name!r}: {e}") from None
        if not hasattr(model, "fit"):
            raise ModelError(f"builder of {self.name!r} returned {type(model).__name__}, not a keras.Model")
        got_in, got_out = tuple(model.input_shape[1:]), model.output_shape[-1]
        if got_in != tuple(shape) or got_out != classes:
            raise ModelError(f"model {self.name!r} is built for {_shape(got_in)} images and {got_out} classes, "
                             f"not this competition's {_shape(shape)} and {classes} (its builder should take "
                             "input_shape and classes: see harness.registry)")
        return model


def _shape(shape: tuple) -> str:
    return "x".join(str(d) for d in shape)


_REGISTRY: dict[str, ModelSpec] = {}
_current_source = "user code"
_discovered = False


def register_model(name: str, *, family: str, description: str, recipe: dict[str, Any] | None = None,
                   search_space: dict[str, Any] | None = None, tiny: bool = False,
                   min_epochs: int | None = None, bag_gain: float = 0.0) -> Callable:
    """Decorator registering `builder` under `name`. A duplicate name raises ModelError.
    `min_epochs` and `bag_gain` tell a time-limited run's planner (harness.run.planner) how far the
    model's epochs may be cut and what a second bag of it is worth."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        # `~` (bags), `+` (pseudo-labels) and `@` (INT8) build derived names; a name is also a folder
        raise ModelError(f"model name {name!r}: use letters, digits, '_', '-' and '.' (starting with a letter "
                         f"or digit); '~', '+' and '@' mark bags, pseudo-label and INT8 rows")
    if min_epochs is not None and (not isinstance(min_epochs, int) or min_epochs < 1):
        raise ModelError(f"model {name!r}: min_epochs must be a whole number of at least 1, got {min_epochs!r}")
    if not isinstance(bag_gain, (int, float)) or bag_gain < 0:
        raise ModelError(f"model {name!r}: bag_gain must be a number of at least 0, got {bag_gain!r}")
    unknown = set(recipe or {}) - set(RECIPE_DEFAULTS)
    if unknown:
        raise ModelError(f"model {name!r}: unknown recipe field(s) {sorted(unknown)} "
                         f"(known: {', '.join(RECIPE_DEFAULTS)})")

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is registered twice: by {_REGISTRY[name].source} "
                             f"and by {_current_source}")
        _REGISTRY[name] = ModelSpec(
            name=name, builder=builder, family=family, description=description,
            recipe={**RECIPE_DEFAULTS, **(recipe or {})}, search_space=dict(search_space or {}),
            tiny=tiny, source=_current_source, min_epochs=min_epochs, bag_gain=float(bag_gain))
        return builder

    return decorator


def unregister_model(name: str) -> None:
    """Remove a model (tests, and plugins that replace one deliberately)."""
    _REGISTRY.pop(name, None)


def discover(force: bool = False) -> None:
    """Import the built-in plugins (models/ = package `harness_models`) and entry points, once."""
    global _discovered, _current_source
    if _discovered and not force:
        return
    _discovered = True
    import harness_models

    for info in sorted(pkgutil.iter_modules(harness_models.__path__), key=lambda m: m.name):
        _import_as(f"harness_models.{info.name}", f"models/{info.name}.py")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "?"
        try:
            _current_source = f"entry point {ep.name} ({dist})"
            loaded = ep.load()  # importing the module registers its models
            if callable(loaded) and not isinstance(loaded, type) and not _REGISTRY.get(ep.name):
                loaded()  # an entry point may also name a function that registers models
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"model plugin {ep.value!r} from {dist} failed to load: "
                             f"{type(e).__name__}: {e}") from e
        finally:
            _current_source = "user code"


def _import_as(module: str, source: str) -> None:
    global _current_source
    _current_source = source
    try:
        importlib.import_module(module)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"model plugin {source} failed to import: {type(e).__name__}: {e}") from e
    finally:
        _current_source = "user code"


def list_models(pattern: str | None = None, *, include_tiny: bool = True) -> list[ModelSpec]:
    """Registered models matching a shell-style wildcard pattern, sorted by name."""
    discover()
    specs = [s for s in _REGISTRY.values() if include_tiny or not s.tiny]
    if pattern:
        specs = [s for s in specs if fnmatch.fnmatchcase(s.name, pattern)]
    return sorted(specs, key=lambda s: s.name)


def get_model(name: str) -> ModelSpec:
    """The spec registered as `name`; an unknown name lists the known ones and a close match."""
    discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ModelError(f"unknown model {name!r}{hint} (known: {', '.join(known)})")


def select_models(names: list[str] | None, all_models: bool) -> list[ModelSpec]:
    """Models for a run: `--all` (every non-tiny model) or names/wildcards in the given order."""
    if all_models:
        return list_models(include_tiny=False)
    selected: list[ModelSpec] = []
    for name in names or []:
        matches = list_models(name) if any(c in name for c in "*?[") else [get_model(name)]
        if not matches:
            raise ModelError(f"no model matches {name!r} (known: {', '.join(sorted(_REGISTRY))})")
        selected += [m for m in matches if m not in selected]
    return selected
