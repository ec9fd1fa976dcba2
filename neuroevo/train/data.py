"""Training images, decoded and resized once into a uint8 cache on disk, then shared by every training task.

A source (an ImageFolder tree, or CIFAR through torchvision) is prepared once into
<cache_dir>/<key>-<fingerprint>.npy, uint8 N x C x H x W, described by <cache_dir>/<key>.json. The key names
the source, root, size, channels and subset; the fingerprint is the source's file list with sizes and mtimes,
so a changed source is prepared again and an unchanged one is only memory-mapped. Both files are written under
temporary names and renamed into place, the manifest last, so a killed preparation is never trusted.

Tasks read the images zero-copy: from Ray's object store (the driver puts them there once), or by mapping the
cache file on their own node, which never loads the whole array (see `for_tasks`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from neuroevo.config import DataConfig

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
DEMO_IMAGES = 2048
DEMO_BYTES = 40  # the demo's peak memory per pixel of its images while drawing them: three float32 RGB copies, a mask
CIFAR_IMAGES = 50_000  # CIFAR-10's and CIFAR-100's training sets
CACHE_VERSION = 1  # bump when the cache's layout or decoding changes: older caches are then prepared again
IN_MEMORY_FRACTION = 0.1  # in_memory: auto puts images in the object store up to this share of the machine's RAM
_BLOCK = 512  # files handed to the decoding threads at a time
_SUBSET_STREAM = 2  # keeps the subset draw apart from other random streams drawn from the run seed


class DataError(ValueError):
    """Unusable training data; its message is one line naming the path or key."""


@dataclass(frozen=True)
class Cache:
    """A prepared cache file: what a training task needs to map the images on its own node."""

    path: str
    shape: tuple[int, ...]

    def open(self) -> np.ndarray:
        """A read-only memory map: pages are read from disk (or the page cache) only when a batch needs them."""
        try:
            images = np.load(self.path, mmap_mode="r")
        except FileNotFoundError:
            raise DataError(
                f"data.cache_dir: {self.path} is not on node {socket.gethostname()}; put data.cache_dir on a "
                f"filesystem every node shares, or run `neuroevo prepare` with the same config on every node") from None
        if images.shape != self.shape:
            raise DataError(f"data.cache_dir: {self.path} holds {images.shape}, expected {self.shape}")
        return images


@dataclass(frozen=True)
class Images:
    array: np.ndarray  # uint8, N x C x H x W: a read-only map of the cache, or in memory for the demo
    classes: tuple[str, ...]
    skipped: int  # files that could not be decoded
    description: str
    warnings: tuple[str, ...] = ()
    cache: Cache | None = None  # None for the demo, which is generated, not prepared
    manifest: dict[str, Any] | None = None


def load(cfg: DataConfig, seed: int = 0, progress: bool = True) -> Images:
    """The images for a run: generated (demo), or from the cache, prepared first when missing or stale."""
    if cfg.source == "demo":
        n = cfg.subset or DEMO_IMAGES
        need, available = n * cfg.image_size**2 * DEMO_BYTES, _available_memory()
        if need > available:  # checked first: numpy would fail part-way, or the kernel kill the process
            raise DataError(f"data.subset: {n:,} demo images at {cfg.image_size}px need about {need / 2**30:.1f} GiB "
                            f"of memory to draw; this machine has {available / 2**30:.1f} GiB available")
        return demo(n, cfg.image_size, cfg.channels, seed)
    scan = _scan_cifar(cfg) if cfg.source in ("cifar10", "cifar100") else _scan_folder(cfg)
    if cfg.subset is not None and cfg.subset > scan.count:
        origin = scan.root if cfg.source in ("folder", "imagenet") else cfg.source
        raise DataError(f"data.subset: {cfg.subset:,} is more than the {scan.count:,} images of {origin}")
    return _cached(cfg, seed, scan, progress)


def for_tasks(images: Images, cfg: DataConfig) -> np.ndarray | Cache:
    """What the driver hands to training tasks: the array, which it puts in Ray's object store once (one copy
    per node, mapped read-only by every task there), or the cache, which each task maps from its node's disk.

    in_memory: auto takes the object store when the images fill at most IN_MEMORY_FRACTION of this machine's
    RAM; larger data (ImageNet at 200 px is ~150 GB) is mapped and streamed a batch at a time.
    """
    if images.cache is None:
        return images.array
    in_memory = cfg.in_memory
    if in_memory == "auto":
        in_memory = images.array.nbytes <= IN_MEMORY_FRACTION * _physical_memory()
    return np.asarray(images.array) if in_memory else images.cache


def attach(images: np.ndarray | Cache) -> np.ndarray:
    """In a training task: the images, zero-copy (an object-store array arrives already mapped)."""
    return images.open() if isinstance(images, Cache) else images


def record(images: Images, shared: np.ndarray | Cache) -> dict[str, Any]:
    """The run's data.json: the cache's manifest and how the tasks read it."""
    return {**(images.manifest or {"source": "demo", "images": len(images.array), "shape": list(images.array.shape),
                                   "skipped": 0, "warnings": []}),
            "warnings": list(images.warnings),
            "cache": images.cache.path if images.cache else None,
            "tasks_read": "memory map" if isinstance(shared, Cache) else "object store"}


def demo(n: int, size: int, channels: int, seed: int) -> Images:
    """Synthetic pictures that need no download: a coloured disc on a two-colour gradient.

    Enough structure (edges, colour, position) for a GAN to learn something in a minute on a CPU.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)  # each size x size, in [0, 1]
    top, bottom, disc = (rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32) for _ in range(3))
    img = top * (1 - yy) + bottom * yy  # n x 3 x size x size
    cx, cy = rng.uniform(0.2, 0.8, (2, n, 1, 1, 1)).astype(np.float32)
    radius = rng.uniform(0.15, 0.35, (n, 1, 1, 1)).astype(np.float32)
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
    img = np.where(inside, disc, img)
    if channels == 1:
        img = img.mean(axis=1, keepdims=True)
    return Images((img * 255).round().astype(np.uint8), ("demo",), 0, f"demo: {n} synthetic {size}px images")


# ---- decoding ----------------------------------------------------------------------------------------------


def to_array(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Any PIL image -> uint8 C x size x size: grey, palette and alpha images converted to `channels`, the
    shorter side scaled to `size` and the centre square kept, so the aspect ratio is never distorted."""
    if img.mode == "P":
        img = img.convert("RGBA")  # a palette's transparency survives only through RGBA
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)  # H x W x C -> C x H x W


def _decode_file(path: str, size: int, channels: int) -> np.ndarray:
    with Image.open(path) as img:
        img.draft("L" if channels == 1 else "RGB", (size, size))  # JPEG: decode at a reduced scale, still >= size
        return to_array(img, size, channels)


def _attempt(decode: Callable[[Any], np.ndarray]) -> Callable[[Any], np.ndarray | str]:
    def run(item: Any) -> np.ndarray | str:
        try:
            return decode(item)
        except Exception as e:  # noqa: BLE001 - Pillow signals a bad file with many exception types
            return " ".join(f"{type(e).__name__}: {e}".split())

    return run


# ---- sources: what is there, and how to decode it --------------------------------------------------------


@dataclass(frozen=True)
class _Items:
    classes: tuple[str, ...]
    items: Sequence[Any]  # file paths, or row numbers of a CIFAR array
    decode: Callable[[Any], np.ndarray]  # item -> uint8 C x H x W
    label: Callable[[Any], str]  # item -> how a skipped item is named in the logs


@dataclass(frozen=True)
class _Scan:
    """A source's identity, found cheaply (directory listings and stats), and how to open it for decoding."""

    root: Path
    fingerprint: str
    open: Callable[[], _Items]
    count: int  # the images there are (undecodable files included)
    notes: tuple[str, ...] = ()  # found while preparing; kept in the manifest
    layout: tuple[str, ...] = ()  # about the folder tree, found at every scan


def _scan_folder(cfg: DataConfig) -> _Scan:
    """An ImageFolder tree: root/<class>/**/<image>. Sub-folders are classes; other files are ignored."""
    root = Path(cfg.root or "").expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data.root: {cfg.root} is not a directory")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"data.root: {root} has no class sub-folders (expected root/<class>/<image>)")
    digest = hashlib.blake2b(digest_size=16)
    files: list[str] = []
    classes: list[str] = []
    empty: list[str] = []
    ignored = 0
    for c in class_dirs:
        before = len(files)
        for dirpath, dirnames, filenames in os.walk(c, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    ignored += 1
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                    stamp = f"{st.st_size} {st.st_mtime_ns}"
                except OSError:  # e.g. a broken link: kept, so that decoding counts it as skipped
                    stamp = "unreadable"
                files.append(path)
                digest.update(f"{os.path.relpath(path, root)}\0{stamp}\n".encode())
        (classes if len(files) > before else empty).append(c.name)
    if not files:
        raise DataError(f"data.root: {root} has no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    notes = []
    if empty:
        notes.append(f"{len(empty)} class folders under {root} hold no images and are left out: {', '.join(empty[:5])}"
                     + (", ..." if len(empty) > 5 else ""))
    if ignored:
        notes.append(f"{ignored} files under {root} are not images ({', '.join(IMAGE_EXTENSIONS)}) and were ignored")

    def open_() -> _Items:
        return _Items(tuple(classes), files, lambda f: _decode_file(f, cfg.image_size, cfg.channels),
                      lambda f: os.path.relpath(f, root))

    return _Scan(root, digest.hexdigest(), open_, len(files), tuple(notes), _nested(root, class_dirs))


def _nested(root: Path, class_dirs: list[Path]) -> tuple[str, ...]:
    """A root whose one class folder holds no images of its own but class folders: likely the parent of the
    ImageFolder meant (root/train/<class>/<image>), which would read as a single class."""
    if len(class_dirs) != 1:
        return ()
    inner = sorted(d.name for d in class_dirs[0].iterdir() if d.is_dir() and not d.name.startswith("."))
    own = any(f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS) for f in class_dirs[0].iterdir())
    if len(inner) < 2 or own:
        return ()
    shown = ", ".join(inner[:3]) + (", ..." if len(inner) > 3 else "")
    return (f"data.root: {root} holds one class folder, {class_dirs[0].name}, which holds {len(inner)} folders "
            f"({shown}) and no images of its own, so it reads as 1 class; if those are the classes, set "
            f"data.root={class_dirs[0]}",)


def _scan_cifar(cfg: DataConfig) -> _Scan:
    """CIFAR-10/100's training set through torchvision: downloaded into root when data.download allows."""
    from torchvision import datasets  # imported here: only the CIFAR sources need it

    root = Path(cfg.root or "data").expanduser().resolve()
    cls = datasets.CIFAR10 if cfg.source == "cifar10" else datasets.CIFAR100
    folder = root / cls.base_folder
    if not folder.is_dir() and cfg.download:
        try:
            cls(str(root), train=True, download=True)
        except Exception as e:  # noqa: BLE001 - no network, a full disk, a bad archive: all end the same way
            raise DataError(f"data.download: could not fetch {cfg.source} into {root} "
                            f"({' '.join(str(e).split())}); copy {cls.base_folder}/ there by hand") from None
    if not folder.is_dir():
        raise DataError(f"data.root: no {cfg.source} at {folder}; set data.download=true to fetch it "
                        f"there, or point data.root at a folder holding {cls.base_folder}/")
    digest = hashlib.blake2b(digest_size=16)
    for f in sorted(folder.iterdir()):
        st = f.stat()
        digest.update(f"{f.name}\0{st.st_size} {st.st_mtime_ns}\n".encode())

    def open_() -> _Items:
        try:
            ds = cls(str(root), train=True, download=False)
        except RuntimeError:
            raise DataError(f"data.root: {folder} is incomplete or corrupted (torchvision's checksums differ); "
                            f"delete it and set data.download=true") from None
        rows = ds.data  # N x 32 x 32 x 3
        return _Items(tuple(ds.classes), range(len(rows)),
                      lambda i: to_array(Image.fromarray(rows[i]), cfg.image_size, cfg.channels),
                      lambda i: f"{cls.base_folder} row {i}")

    return _Scan(root, digest.hexdigest(), open_, CIFAR_IMAGES)


# ---- the cache ---------------------------------------------------------------------------------------------


def cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("NEUROEVO_CACHE") or "~/.cache/neuroevo").expanduser().resolve()


def cache_key(cfg: DataConfig, root: Path, seed: int) -> str:
    """Readable, and unique per (source, root, size, channels, subset): e.g. folder-64px-rgb-all-1a2b3c4d."""
    if cfg.subset is None:
        subset = "all"
    else:
        subset = f"first{cfg.subset}" if cfg.subset_pick == "first" else f"random{cfg.subset}-seed{seed}"
    where = hashlib.blake2b(str(root).encode(), digest_size=4).hexdigest()
    return f"{cfg.source}-{cfg.image_size}px-{'grey' if cfg.channels == 1 else 'rgb'}-{subset}-{where}"


def _cached(cfg: DataConfig, seed: int, scan: _Scan, progress: bool) -> Images:
    directory = cache_dir(cfg)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"data.cache_dir: cannot create {directory} ({e.strerror})") from None
    key = cache_key(cfg, scan.root, seed)
    manifest = _trusted_manifest(directory, key, scan.fingerprint)
    reused = manifest is not None
    if manifest is None:
        try:
            with _lock(directory / f"{key}.lock", key):
                manifest = _trusted_manifest(directory, key, scan.fingerprint)  # another process may have built it
                reused = manifest is not None
                if manifest is None:
                    manifest = _prepare(directory, key, cfg, seed, scan, progress)
        except OSError as e:  # source files that fail are skipped inside; this is the cache folder failing
            raise DataError(f"data.cache_dir: cannot write the cache to {directory} ({e.strerror or e})") from None
    path = directory / manifest["file"]
    array = np.load(path, mmap_mode="r")
    how = "reused" if reused else f"prepared in {manifest['prepare_seconds']:.1f} s"
    origin = scan.root if cfg.source in ("folder", "imagenet") else cfg.source
    description = (f"{origin}: {len(array)} images in {len(manifest['classes'])} classes at {cfg.image_size}px "
                   f"({manifest['skipped']} skipped); cache {path} ({how})")
    return Images(array, tuple(manifest["classes"]), manifest["skipped"], description,
                  scan.layout + tuple(manifest["warnings"]), Cache(str(path), array.shape), {**manifest, "reused": reused})


def _trusted_manifest(directory: Path, key: str, fingerprint: str) -> dict[str, Any] | None:
    """The key's manifest if it describes a complete cache of the source as it is now; else None."""
    try:
        manifest = json.loads((directory / f"{key}.json").read_text())
        if manifest["version"] != CACHE_VERSION or manifest["fingerprint"] != fingerprint:
            return None
        shape = np.load(directory / manifest["file"], mmap_mode="r").shape
        return manifest if list(shape) == manifest["shape"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def _lock(path: Path, key: str) -> Iterator[None]:
    """One preparer per key at a time: others wait, then find its cache and reuse it."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"data: waiting for another process to prepare {key}", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _order(n: int, cfg: DataConfig, seed: int) -> np.ndarray:
    """Items in the order they are tried; a file that does not decode is replaced by the next one."""
    if cfg.subset is not None and cfg.subset_pick == "random":
        return np.random.default_rng([seed, _SUBSET_STREAM]).permutation(n)
    return np.arange(n)


def _prepare(directory: Path, key: str, cfg: DataConfig, seed: int, scan: _Scan, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    src = scan.open()
    order = _order(len(src.items), cfg, seed)
    wanted = min(cfg.subset or len(order), len(order))
    need, free = wanted * cfg.channels * cfg.image_size**2, shutil.disk_usage(directory).free
    if need > free:  # checked first: a mapped write to a full disk kills the process (SIGBUS), no exception
        raise DataError(f"data.cache_dir: {directory} has {free / 2**30:.1f} GiB free; the cache of {wanted} images "
                        f"at {cfg.image_size}px needs {need / 2**30:.1f} GiB")
    name = f"{key}-{scan.fingerprint[:12]}.npy"
    for stale in directory.glob(f".{key}-*"):  # a killed preparation's leftovers; the lock makes them ours
        stale.unlink(missing_ok=True)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    try:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                           shape=(wanted, cfg.channels, cfg.image_size, cfg.image_size))
        n, bad = _fill(images, src, order, wanted, f"preparing {key}", progress)
        images.flush()  # msync: the pixels are on disk before the name says they are complete
        del images
        if n == 0:
            example = f" (e.g. {bad[0][0]}: {bad[0][1]})" if bad else ""
            raise DataError(f"data.root: none of the {len(bad)} files under {scan.root} could be decoded as "
                            f"images{example}")
        if n < wanted:
            _truncate(tmp, n)
        os.replace(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)
    notes = list(scan.notes)
    if bad:
        notes.insert(0, f"{len(bad)} files under {scan.root} could not be decoded and were skipped, "
                        f"e.g. {bad[0][0]}: {bad[0][1]}")
    manifest = {
        "version": CACHE_VERSION,
        "file": name,
        "source": cfg.source,
        "root": str(scan.root),
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "subset": cfg.subset,
        "subset_pick": cfg.subset_pick,
        "seed": seed if cfg.subset is not None and cfg.subset_pick == "random" else None,
        "fingerprint": scan.fingerprint,
        "images": n,
        "shape": [n, cfg.channels, cfg.image_size, cfg.image_size],
        "classes": list(src.classes),
        "skipped": len(bad),
        "skipped_files": [f"{item}: {error}" for item, error in bad[:20]],
        "warnings": notes,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prepare_seconds": round(time.perf_counter() - start, 3),
    }
    previous = _read_json(directory / f"{key}.json")
    _write_atomic(directory / f"{key}.json", json.dumps(manifest, indent=1) + "\n")
    if previous.get("file") not in (None, name):  # the cache it replaces; maps still open keep their pages
        (directory / previous["file"]).unlink(missing_ok=True)
    return manifest


def _fill(out: np.ndarray, src: _Items, order: np.ndarray, wanted: int, desc: str,
          progress: bool) -> tuple[int, list[tuple[str, str]]]:
    """Decode items in `order` into out[0], out[1], ... until `wanted` decoded. Returns (count, skipped items).
    Pillow releases the GIL while it decodes and resizes, so threads use every core."""
    n, bad = 0, []
    decode = _attempt(src.decode)
    with ThreadPoolExecutor(_cpus()) as pool, \
            tqdm(total=wanted, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, len(order), _BLOCK):
            block = [src.items[i] for i in order[start:start + _BLOCK]]
            for item, result in zip(block, pool.map(decode, block)):
                if isinstance(result, str):
                    bad.append((src.label(item), result))
                    bar.set_postfix(skipped=len(bad), refresh=False)
                    continue
                out[n] = result
                n += 1
                bar.update()
                if n == wanted:
                    return n, bad
    return n, bad


def _truncate(path: Path, n: int) -> None:
    """Keep the first n rows of a uint8 .npy, in place: numpy's header leaves room for the first dimension
    to change, so only the header's text and the file's length change."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (n, *shape[1:])}
        f.seek(0)
        (np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0)(f, header)
        if f.tell() != offset:
            raise RuntimeError(f"{path}: the shortened .npy header does not fit in place")
        f.truncate(offset + n * int(np.prod(shape[1:])) * dtype.itemsize)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _available_memory() -> int:
    """What a new allocation can have without swapping: Linux's MemAvailable (free memory plus the page cache it
    can drop), else the free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (OSError, ValueError):  # a platform without it (macOS)
        return _physical_memory()
