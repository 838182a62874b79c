"""Settings: loaded once from config.json, overridden by ANIMEBACK_<KEY> variables, validated, passed down.

Settings are frozen: nothing changes them after loading. A caller that needs other values (a test, a benchmark,
a command-line option) makes a changed copy with `updated()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_CONFIG_NAME = "config.json"
ENV_PREFIX = "ANIMEBACK_"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class MediaSettings:
    sample_fps: float = 3.0
    preview: bool = True
    preview_height: int = 360
    preview_crf: int = 30
    preview_preset: str = "ultrafast"
    skip_loop_filter: bool = True
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


@dataclass(frozen=True)
class DedupeSettings:
    max_distance: int = 9
    window: int = 50
    max_age_s: float = 1.0
    max_span_s: float = 1.0


@dataclass(frozen=True)
class RepeatSettings:
    enabled: bool = True
    min_seconds: float = 10.0
    similarity: float = 0.8


@dataclass(frozen=True)
class FeatureSettings:
    model: str = ""
    weights: str = "models/mobilenet_v2_imagenet.weights.h5"
    pca: str = ""
    batch_size: int = 32
    threads: int = 0
    half_frames: bool = False
    half_entries: str = "float"  # how half-frame entries are stored: "float" vectors, or 256-bit "binary" codes

    @property
    def coded_halves(self) -> bool:
        """Whether the index holds half-frame entries stored as binary codes."""
        return self.half_frames and self.half_entries == "binary"


@dataclass(frozen=True)
class MilvusSettings:
    uri: str = ""
    token: str = ""
    collection: str = "animeback_frames"
    nlist: int = 128
    nprobe: int = 16
    index_type: str = ""  # "": SERVER_INDEX_TYPE on a Milvus server, IVF_FLAT on Milvus Lite
    params: dict = field(default_factory=dict)
    search_params: dict = field(default_factory=dict)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SearchSettings:
    max_results: int = 10
    candidates: int = 100
    group_gap_s: float = 5.0
    span_tolerance: float = 0.05
    cut_borders: bool = True
    mirror: bool = True
    confident: float = 0.9
    refine: int = 1
    max_image_bytes: int = 25 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    min_image_side: int = 16


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 4000
    public_url: str = ""
    secret: str = ""
    preview_ttl_s: int = 3600
    preview_max_side_s: float = 5.0
    fetch_timeout_s: float = 10.0
    fetch_allow_networks: list = field(default_factory=list)
    max_search_queue: int = 8
    cnn_threads: int = 1
    preview_cache_mb: float = 256.0
    trusted_proxies: int = 0


@dataclass(frozen=True)
class ApiSettings:
    keys: dict = field(default_factory=dict)
    anonymous_quota: int = 0
    anonymous_concurrency: int = 0
    rate_limit_per_minute: int = 0


@dataclass(frozen=True)
class BilibiliSettings:
    queue: list = field(default_factory=list)
    quality: int = 80
    sessdata: str = ""
    parallel: int = 2
    retries: int = 4
    process_after: bool = False


@dataclass(frozen=True)
class ProcessSettings:
    max_removal_share: float = 0.5
    retry_failed_after_s: float = 60.0
    watch_settle_s: float = 10.0
    watch_rescan_s: float = 300.0
    watch_polling: bool = False


@dataclass(frozen=True)
class StoreSettings:
    host_idle_s: float = 30.0
    catalogue: str = "local"
    redis_url: str = ""


@dataclass(frozen=True)
class MatchSettings:
    collection: str = "animeback_stills"
    max_results: int = 10


@dataclass(frozen=True)
class Settings:
    library_dir: str = "library"
    data_dir: str = "data"
    media_dir: str = ""
    log_level: str = "INFO"
    media: MediaSettings = field(default_factory=MediaSettings)
    dedupe: DedupeSettings = field(default_factory=DedupeSettings)
    repeats: RepeatSettings = field(default_factory=RepeatSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    milvus: MilvusSettings = field(default_factory=MilvusSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    stores: StoreSettings = field(default_factory=StoreSettings)
    match: MatchSettings = field(default_factory=MatchSettings)
    bilibili: BilibiliSettings = field(default_factory=BilibiliSettings)
    # Directory that relative paths are resolved against: the config file's folder.
    base_dir: Path = field(default=Path("."), metadata={"internal": True})

    def path(self, value: str) -> Path:
        """Resolve a path setting: absolute as given, relative to the config file's folder, else the project."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        if value.startswith("models/") and not (self.base_dir / p).exists():
            return PROJECT_ROOT / p  # shipped model files live in the project, wherever the config is
        return self.base_dir / p

    @property
    def library_path(self) -> Path:
        return self.path(self.library_dir)

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    def ensure_data_dir(self) -> Path:
        """The data folder, created owner-only (0700) when missing: it holds the index, the keys and the previews."""
        self.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.data_path

    @property
    def media_path(self) -> Path:
        """The folder of the episodes' web previews: media_dir (a folder web nodes share), else data_dir/previews."""
        return self.path(self.media_dir) if self.media_dir else self.data_path / "previews"

    def preview_path(self, name: str) -> Path:
        """Where an episode's web preview (its record's `preview`, "previews/<id>.mp4") lies."""
        return self.media_path / Path(name).name

    @property
    def web_node(self) -> bool:
        """True on a web node: it reads the catalogue the indexing node publishes in Milvus, and owns no stores."""
        return self.stores.catalogue == "milvus"

    @property
    def milvus_uri(self) -> str:
        """The Milvus URI: a server's when configured, else the embedded Milvus Lite file in data_dir."""
        return self.milvus.uri or str(self.data_path / "milvus.db")

    @property
    def milvus_index_type(self) -> str:
        """The vector index to build: milvus.index_type, else the best for where the vectors live."""
        return self.milvus.index_type or (SERVER_INDEX_TYPE if self.milvus_server else "IVF_FLAT")

    @property
    def milvus_server(self) -> bool:
        """True when milvus.uri names a Milvus server rather than an embedded Milvus Lite file."""
        return self.milvus.uri.startswith(("http://", "https://", "tcp://", "unix:"))


# Allowed ranges and choices, checked after loading; (low, high) inclusive, or a tuple of choices.
_LIMITS: dict[str, Any] = {
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "media.sample_fps": (0.1, 30.0),
    "media.preview_height": (64, 2160),
    "media.preview_crf": (0, 51),
    "media.preview_preset": ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"),
    "dedupe.max_distance": (0, 64),
    "dedupe.window": (1, 10_000),
    "dedupe.max_age_s": (0.0, 3600.0),
    "dedupe.max_span_s": (0.0, 3600.0),
    "repeats.min_seconds": (1.0, 3600.0),
    "repeats.similarity": (0.5, 1.0),
    "features.batch_size": (1, 1024),
    "features.threads": (0, 256),
    "features.half_entries": ("float", "binary"),
    "milvus.nlist": (1, 65536),
    "milvus.nprobe": (1, 65536),
    "milvus.index_type": ("", "IVF_FLAT", "FLAT", "AUTOINDEX", "IVF_SQ8", "IVF_PQ", "HNSW"),
    "milvus.timeout_s": (0.5, 600.0),
    "search.max_results": (1, 100),
    "search.candidates": (1, 16384),  # Milvus's top-k limit (stores.vectors.MAX_TOPK)
    "search.group_gap_s": (0.0, 3600.0),
    "search.span_tolerance": (0.0, 1.0),
    "search.confident": (0.0, 1.0),
    "search.refine": (0, 100),
    "search.max_image_bytes": (1024, 1 << 31),
    # PIL refuses to open more than twice its MAX_IMAGE_PIXELS (89,478,485): the highest limit we can honour
    "search.max_image_pixels": (1, 178_956_970),
    "search.min_image_side": (1, 4096),
    "server.port": (1, 65535),
    "server.preview_ttl_s": (10, 30 * 86400),
    "server.preview_max_side_s": (0.5, 60.0),
    "server.fetch_timeout_s": (0.5, 120.0),
    "server.max_search_queue": (1, 10_000),
    "server.cnn_threads": (0, 256),
    "server.preview_cache_mb": (0.0, 1_000_000.0),
    "server.trusted_proxies": (0, 10),
    "api.anonymous_quota": (0, 1 << 31),
    "api.anonymous_concurrency": (0, 10_000),
    "api.rate_limit_per_minute": (0, 1_000_000),
    "process.max_removal_share": (0.0, 1.0),
    "process.retry_failed_after_s": (0.0, 30 * 86400.0),
    "process.watch_settle_s": (0.0, 86400.0),
    "process.watch_rescan_s": (1.0, 86400.0),
    "stores.host_idle_s": (0.5, 86400.0),
    "stores.catalogue": ("local", "milvus"),
    "match.max_results": (1, 1000),
    "bilibili.quality": (16, 127),
    "bilibili.parallel": (1, 16),
    "bilibili.retries": (0, 20),
}


def _public_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def to_dict(settings: Any) -> dict:
    """The settings as a JSON-ready dict (internal fields left out)."""
    out = {}
    for f in _public_fields(type(settings)):
        value = getattr(settings, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


# Keys whose values are secrets: an error about them says what is wrong, never the value.
SECRET_KEYS = frozenset({"server.secret", "milvus.token", "bilibili.sessdata", "api.keys", "stores.redis_url"})


def _shown(key: str, value: Any) -> str:
    """A value as an error message may show it: secrets by their type only."""
    return f"a {type(value).__name__} (not shown: a secret)" if key in SECRET_KEYS else repr(value)


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind in (list, dict):
        if isinstance(value, str):  # from the environment: JSON
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"config key '{key}' must be a JSON {kind.__name__}, got {_shown(key, value)}"
                ) from None
        if isinstance(value, kind):
            return value
    raise ConfigError(f"config key '{key}' must be {kind.__name__}, got {_shown(key, value)}")


def _apply(obj: Any, data: dict, prefix: str, source: str) -> Any:
    """A copy of a settings object with the values of `data` (nested dicts for sections), checked and coerced."""
    fields = {f.name: f for f in _public_fields(type(obj))}
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown config key '{key}'{hint}")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key '{key}' must be an object")
            changes[name] = _apply(current, value, f"{key}.", source)
        else:
            changes[name] = _coerce(key, value, hints[name])
    return dataclasses.replace(obj, **changes)


def updated(settings: Settings, **changes: Any) -> Settings:
    """A copy of settings with some values changed, checked as a config file's would be: sections as dicts
    (`updated(s, media={"sample_fps": 2.0})`), top-level keys as values (`updated(s, data_dir="x")`)."""
    result = _apply(settings, changes, "", "updated settings")
    _validate(result)
    return result


def _env_overrides(environ: typing.Mapping[str, str]) -> dict:
    """ANIMEBACK_MEDIA__SAMPLE_FPS=3 -> {"media": {"sample_fps": "3"}} (ANIMEBACK_CONFIG names the file)."""
    tree: dict = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def _validate(settings: Settings) -> None:
    for key, limit in _LIMITS.items():
        obj = settings
        *parents, leaf = key.split(".")
        for p in parents:
            obj = getattr(obj, p)
        value = getattr(obj, leaf)
        if isinstance(limit[0], str):
            if value not in limit:
                raise ConfigError(f"config key '{key}' must be one of {', '.join(limit)}; got {value!r}")
        elif not limit[0] <= value <= limit[1]:
            raise ConfigError(f"config key '{key}' must be between {limit[0]} and {limit[1]}; got {value!r}")
    _validate_stores(settings)
    for key, folder in (
        ("data_dir", settings.data_path),
        ("library_dir", settings.library_path),
        ("media_dir", settings.media_path),
    ):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"config key '{key}' names {folder}, which is a file, not a folder")
    for network in settings.server.fetch_allow_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(
                f"config key 'server.fetch_allow_networks' must list networks like \"10.0.0.0/8\"; got {network!r}"
            ) from None
    for spec in settings.api.keys.values():
        allowed: dict[str, type] = {"id": str, "priority": int, "concurrency": int, "quota": int, "admin": bool}
        if (
            not isinstance(spec, dict)
            or not set(spec) <= set(allowed)
            or any(
                not isinstance(v, allowed[k]) or (isinstance(v, bool) != (allowed[k] is bool)) for k, v in spec.items()
            )
        ):
            # the key itself is a secret: the message names its user (id), never the key
            who = spec.get("id") if isinstance(spec, dict) and isinstance(spec.get("id"), str) else "?"
            raise ConfigError(
                f"config key 'api.keys' entry of user {who!r} must be an object with id (string), priority, "
                f"concurrency and quota (integers) and admin (true/false)"
            )


# Index types Milvus Lite builds; a Milvus server builds these and the others of milvus.index_type's choices.
LITE_INDEX_TYPES = ("IVF_FLAT", "FLAT", "AUTOINDEX")
# What a Milvus server builds unless told: the best recall and latency measured at 500k rows on a standalone
# (benchmarks/milvus_index.py; IVF_SQ8 holds about 0.6x its memory at a little less recall).
SERVER_INDEX_TYPE = "HNSW"


def _validate_stores(settings: Settings) -> None:
    """Where the vectors, catalogue and counters live must make one consistent layout."""
    milvus, stores = settings.milvus, settings.stores
    if not settings.milvus_server and milvus.index_type not in ("", *LITE_INDEX_TYPES):
        raise ConfigError(
            f"config key 'milvus.index_type' {milvus.index_type!r} needs a Milvus server (milvus.uri); "
            f"Milvus Lite builds only {', '.join(LITE_INDEX_TYPES)}"
        )
    for key in ("params", "search_params"):
        value = getattr(milvus, key)
        if not all(isinstance(k, str) and isinstance(v, (int, float, str)) for k, v in value.items()):
            raise ConfigError(
                f"config key 'milvus.{key}' must map parameter names to numbers, like {{\"nlist\": 1024}}"
            )
    if stores.redis_url and not stores.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "config key 'stores.redis_url' must be a Redis URL like redis://10.0.0.5:6379/0 (or rediss://, unix://)"
        )
    if settings.web_node:
        needs = [
            ("milvus.uri", "a Milvus server the indexing node writes to", settings.milvus_server),
            ("stores.redis_url", "the Redis that holds the API counters all web nodes share", stores.redis_url),
            (
                "server.secret",
                "the preview secret, the same on every node so any node plays any preview link",
                settings.server.secret,
            ),
        ]
        for key, what, given in needs:
            if not given:
                raise ConfigError(f"a web node (stores.catalogue \"milvus\") needs config key '{key}': {what}")


def config_path(explicit: str | os.PathLike | None = None, environ: typing.Mapping[str, str] | None = None) -> Path:
    """Which config file to use: --config, else $ANIMEBACK_CONFIG, else ./config.json."""
    environ = os.environ if environ is None else environ
    return Path(explicit or environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG_NAME).expanduser().resolve()


def load_settings(path: Path | None = None, environ: typing.Mapping[str, str] | None = None) -> Settings:
    """Load settings from a config file (defaults when it is absent) and apply environment overrides."""
    environ = os.environ if environ is None else environ
    path = config_path(path, environ)
    settings = Settings(base_dir=path.parent)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        settings = _apply(settings, data, "", str(path))
    settings = _apply(settings, _env_overrides(environ), "", "environment")
    _validate(settings)
    return settings


def write_default_config(path: Path) -> bool:
    """Write a config file with every key at its default; never overwrite. True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    # Owner-only: the file is where the operator puts API keys, the preview secret and the bilibili cookie.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(to_dict(Settings()), indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return True
