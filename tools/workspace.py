"""The workspace: the one directory tools may read from and write to.

Tool inputs come from a language model and, through it, from users, so every path is untrusted:
`..`, absolute paths elsewhere and symlinks that lead out of the directory are refused, and every
input image is checked from its bytes (a real PNG/JPEG/... whose header fits `max_pixels`, a file no
larger than `max_bytes`) before it is decoded, so a renamed text file or a decompression bomb never
reaches OpenCV. Outputs never overwrite anything: each gets a fresh GPT4Tools-style name
(`image/` + 8 random lower-case letters + `.png`, as in the benchmark's data) and is written to a
temporary file first, then renamed into place, so a crash leaves no half-written image.

Errors are `WorkspaceError`s whose message is meant for the user (a tool returns it as its
observation), so each one says what was refused and what to use instead. An `OSError` from looking a
path up (a name too long, no permission, a file where a folder should be) becomes one too: its own
message would show the server's absolute path, so ours names only the path the user gave.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import string
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

# Formats Pillow verifies and decodes; anything else (SVG, PDF, ...) is refused.
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "BMP", "WEBP", "TIFF", "GIF"})
NAME_EXAMPLE = "image/abcdefgh.png"


class WorkspaceError(ValueError):
    """A path or file a tool may not use; the message is shown to the user as is."""


@contextlib.contextmanager
def _lookup_errors(label: str):
    """Turn an OSError from stat/open/mkdir on `label` into a WorkspaceError that names only `label`."""
    try:
        yield
    except OSError as error:
        label = str(label)
        if len(label) > 80:  # a hostile name can be any length; the user needs only to recognise it
            label = label[:60] + "..."
        if error.errno == errno.ENAMETOOLONG:
            reason = "a name in it is too long"
        elif error.errno in (errno.EEXIST, errno.ENOTDIR):  # from mkdir of an output folder
            reason = "a file stands where a folder is needed"
        else:  # strerror is the bare reason ("Permission denied"); str(error) would add the absolute path
            reason = (error.strerror or "it cannot be read").lower()
        raise WorkspaceError(f"'{label}' cannot be used ({reason}); give a workspace path such as {NAME_EXAMPLE}.") from None


class Workspace:
    def __init__(self, root: str | Path | None = None, max_pixels: int = 40_000_000, max_bytes: int = 20_000_000):
        if root is None:
            root = tempfile.mkdtemp(prefix="loragen-workspace-")
        Path(root).mkdir(parents=True, exist_ok=True)
        self.root = Path(root).resolve()
        self.max_pixels = max_pixels  # width x height an input may claim; 40 MP is a large phone photo
        self.max_bytes = max_bytes

    # Paths -------------------------------------------------------------------------------------

    def resolve(self, relative: str) -> Path:
        """The real path of an existing file or folder inside the workspace."""
        text = str(relative).strip()
        real = self._inside(text)
        with _lookup_errors(text):
            exists = real.exists()
        if not exists:
            raise WorkspaceError(
                f"There is no file '{text}' in the workspace; use a file name from the conversation, such as {NAME_EXAMPLE}."
            )
        return real

    def new_output_path(self, suffix: str = ".png", folder: str = "image") -> tuple[str, Path]:
        """A fresh, unused name for an output: (workspace-relative name, absolute path)."""
        if not (suffix.startswith(".") and suffix[1:].isalnum()):
            raise WorkspaceError(f"{suffix!r} is not a file suffix such as '.png'.")
        directory = self._inside(folder) if folder else self.root
        with _lookup_errors(folder):
            directory.mkdir(parents=True, exist_ok=True)
            while True:
                name = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8)) + suffix
                path = directory / name
                if not path.exists():
                    return path.relative_to(self.root).as_posix(), path

    def _inside(self, text: str) -> Path:
        if not text or "\x00" in text:
            raise WorkspaceError(f"{text!r} is not a file name; give a workspace path such as {NAME_EXAMPLE}.")
        candidate = Path(text)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            real = candidate.resolve()  # follows symlinks and `..`: what would really be opened
        except (OSError, RuntimeError):  # a symlink loop, a name too long
            raise WorkspaceError(f"'{text}' cannot be opened; give a workspace path such as {NAME_EXAMPLE}.") from None
        if real.is_relative_to(self.root):
            return real
        if Path(os.path.normpath(candidate)).is_relative_to(self.root):
            raise WorkspaceError(f"'{text}' is a link to a file outside the workspace; tools only use files inside it.")
        raise WorkspaceError(
            f"'{text}' is outside the workspace; tools only read and write files inside it, such as {NAME_EXAMPLE}."
        )

    # Images ------------------------------------------------------------------------------------

    def load_image(self, relative: str) -> np.ndarray:
        """A workspace image as a BGR uint8 array, after the checks of `decode_image`."""
        path = self.resolve(relative)
        with _lookup_errors(str(relative)):
            is_file = path.is_file()
        if not is_file:
            raise WorkspaceError(f"'{relative}' is a folder, not an image file.")
        return self._read_checked(path, relative)

    def save_image(self, image: np.ndarray, folder: str = "image") -> str:
        """Write an image as PNG under a fresh name, atomically; returns the workspace-relative name."""
        image = np.asarray(image)
        channels_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
        if image.dtype != np.uint8 or not channels_ok or image.size == 0:
            raise WorkspaceError(f"Cannot save an array of shape {image.shape} and type {image.dtype} as an image.")
        if image.shape[0] * image.shape[1] > self.max_pixels:
            raise WorkspaceError(f"The result would have {image.shape[1]}x{image.shape[0]} pixels, more than the {self.max_pixels:,} allowed.")
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise WorkspaceError("The image could not be encoded as PNG.")
        relative, path = self.new_output_path(".png", folder)
        write_atomic(path, encoded.tobytes())
        return relative

    def import_file(self, source: str | Path) -> str:
        """Bring an uploaded image into the workspace: check it, re-encode it as PNG under a new name.

        Re-encoding (rather than copying the bytes) drops metadata and anything appended to the
        image, and gives the `.png` name the GPT4Tools conventions and scorer expect.
        """
        source = Path(source)
        if not source.is_file():
            raise WorkspaceError(f"'{source.name}' is not a file that can be uploaded.")
        return self.save_image(self._read_checked(source, source.name))

    def _read_checked(self, path: Path, label: str) -> np.ndarray:
        with _lookup_errors(label):
            size = path.stat().st_size
            if size > self.max_bytes:
                raise WorkspaceError(f"'{label}' is {size:,} bytes; images may be at most {self.max_bytes:,} bytes.")
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:  # it grew after stat
            raise WorkspaceError(f"'{label}' is larger than {self.max_bytes:,} bytes.")
        return decode_image(data, label, self.max_pixels)


def decode_image(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    """Check untrusted bytes are a real image of at most `max_pixels`, then decode to BGR uint8.

    The header is read and the pixel count checked before anything is decompressed; Pillow's
    `verify` then walks the file (chunk checksums for PNG) without decoding it.
    """
    not_an_image = f"'{label}' is not a readable image (PNG, JPEG, BMP, WEBP, TIFF or GIF)."
    # Pillow raises many exception types on malformed input; any of them means "not an image".
    try:
        probe = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise WorkspaceError(f"'{label}' claims more pixels than the {max_pixels:,} allowed.") from None
    except Exception:
        raise WorkspaceError(not_an_image) from None
    with probe:
        width, height = probe.size
        if probe.format not in IMAGE_FORMATS:
            raise WorkspaceError(not_an_image)
        if width * height > max_pixels:
            raise WorkspaceError(f"'{label}' is {width}x{height} pixels, more than the {max_pixels:,} allowed.")
        try:
            probe.verify()
        except Exception:
            raise WorkspaceError(not_an_image) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except Exception:
        raise WorkspaceError(f"'{label}' is damaged or truncated and cannot be decoded.") from None
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file under a temporary name in the same folder, then rename it into place."""
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(staging, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
