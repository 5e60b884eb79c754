"""Video files: streamed upload into content-addressed storage, ffprobe checks, ffmpeg helpers.

Nothing here touches the database. Uploads are written by the request parser straight into a
temporary file inside the media folder (never the client's name, never memory), capped while
they stream; ``ingest_video`` checks the bytes (magic, box structure, ffprobe, one decoded
frame) and only then links the file under ``<sha256>.<container>``. Every refusal removes the
temporary file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess  # nosec B404  # ffmpeg/ffprobe with an argv list, never a shell
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from werkzeug.exceptions import RequestEntityTooLarge

from review.errors import InvalidInput, TooLarge

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
PROBE_TIMEOUT = 60
#: Largest accepted picture: 8K UHD (7680×4320), either orientation.
MAX_DIMENSION = 7680
MAX_PIXELS = 7680 * 4320
CONTAINERS = ("mp4", "mov", "webm")
MIME_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}
VIDEO_CODECS = {
    "mp4": {"h264", "hevc", "mpeg4", "av1", "vp9"},
    "mov": {"h264", "hevc", "mpeg4", "prores", "mjpeg", "av1"},
    "webm": {"vp8", "vp9", "av1"},
}
AUDIO_CODECS = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"},
    "mov": {"aac", "mp3", "ac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "opus"},
    "webm": {"opus", "vorbis"},
}
#: Subtitle tracks that carry text ffmpeg can convert to SRT.
TEXT_SUBTITLE_CODECS = {"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"}
_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"}
_EBML = b"\x1a\x45\xdf\xa3"


@dataclass(frozen=True)
class Tools:
    """Where ffmpeg and ffprobe are (from the configuration)."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


@dataclass(frozen=True)
class SubtitleTrack:
    """A subtitle stream inside the container."""

    index: int  # among subtitle streams (ffmpeg's 0:s:N)
    codec: str
    language: str | None
    title: str | None


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says about an accepted video."""

    sha256: str
    size: int
    container: str
    duration: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    codecs: list[str] = field(default_factory=list)
    subtitle_tracks: list[SubtitleTrack] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        """The stored name: content hash plus the container's extension."""
        return f"{self.sha256}.{self.container}"


# --- upload streaming ---------------------------------------------------------------------------


class CappedTempFile:
    """A temporary file in the media folder that refuses to grow past ``limit`` bytes.

    Werkzeug's multipart parser writes each uploaded file part into one of these, so an
    oversize upload is cut off while it streams and its partial file is deleted.
    """

    def __init__(self, folder: str | os.PathLike[str], limit: int) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by the request)
            dir=folder, prefix=".upload-", suffix=".part", delete=True
        )
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        """Write a chunk; over the limit the file is closed (deleted) and 413 raised."""
        self.written += len(data)
        if self.written > self.limit:
            self.close()
            raise RequestEntityTooLarge(f"upload larger than {self.limit} bytes")
        return self._file.write(data)

    @property
    def name(self) -> str:
        return self._file.name

    def close(self) -> None:
        """Close and delete the temporary file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    @property
    def closed(self) -> bool:
        return bool(self._file.closed)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._file, attr)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._file)


def open_upload(folder: str | os.PathLike[str], limit: int) -> CappedTempFile:
    """A capped temporary file for one uploaded part."""
    return CappedTempFile(folder, limit)


# --- checks -------------------------------------------------------------------------------------


def _run(
    argv: list[str], *, timeout: float, binary: bool = False
) -> subprocess.CompletedProcess[Any]:
    # argv is a list (no shell): the configured ffmpeg/ffprobe, fixed options and a path we
    # generated (the upload's temporary file or <sha256>.<ext>), never a client's file name.
    try:
        return subprocess.run(  # nosec B603
            argv, capture_output=True, timeout=timeout, check=False, text=not binary
        )
    except subprocess.TimeoutExpired:
        raise InvalidInput(
            "视频文件检查超时，文件可能已损坏", code="invalid_media", field="file"
        ) from None
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} is not installed (needed for videos)") from None


def _check_magic(head: bytes) -> str:
    """'iso' for MP4/MOV (ISO base media), 'ebml' for WebM; refuses anything else."""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return "iso"
    if head.startswith(_EBML):
        return "ebml"
    raise InvalidInput(
        "文件内容不是 MP4、WebM 或 MOV 视频（按文件内容判断，与文件名无关）",
        code="type_mismatch",
        field="file",
    )


def _check_iso_boxes(fh: IO[bytes], size: int) -> None:
    """Every top-level box of an MP4/MOV must fit in the file: a cut-off file fails here."""
    pos = 0
    seen: set[bytes] = set()
    while pos < size:
        fh.seek(pos)
        header = fh.read(16)
        if len(header) < 8:
            break
        box_size = int.from_bytes(header[:4], "big")
        kind = header[4:8]
        if box_size == 1:
            box_size = size + 1 if len(header) < 16 else int.from_bytes(header[8:16], "big")
        elif box_size == 0:
            box_size = size - pos  # extends to the end of the file
        if box_size < 8 or pos + box_size > size:
            raise InvalidInput(
                "视频文件不完整：文件在中途被截断（请重新导出或重新上传）",
                code="invalid_media",
                field="file",
            )
        seen.add(kind)
        pos += box_size
    if b"moov" not in seen:
        raise InvalidInput(
            "视频文件不完整：缺少索引信息（moov），请重新导出", code="invalid_media", field="file"
        )


def _container(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> str:
    names = set(str(fmt.get("format_name", "")).split(","))
    if "mp4" in names or "mov" in names:
        brand = str((fmt.get("tags") or {}).get("major_brand", "")).strip()
        return "mov" if brand == "qt" else "mp4"
    if "webm" in names:
        return "webm"
    raise InvalidInput(
        "不支持的视频格式：只接受 MP4、WebM 和 MOV", code="type_mismatch", field="file"
    )


def probe(path: str | os.PathLike[str], tools: Tools) -> dict[str, Any]:
    """ffprobe's JSON for a file; refuses a file ffprobe cannot read."""
    proc = _run(
        [
            tools.ffprobe,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        timeout=PROBE_TIMEOUT,
    )
    if proc.returncode != 0:
        reason = (proc.stderr or "").strip().splitlines()[-1:] or ["无法读取"]
        raise InvalidInput(
            f"视频文件已损坏或无法读取（{reason[0][:200]}）", code="invalid_media", field="file"
        )
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise InvalidInput("视频文件无法解析", code="invalid_media", field="file") from None
    return data if isinstance(data, dict) else {}


def describe(data: dict[str, Any], *, sha256: str, size: int) -> VideoInfo:
    """Check ffprobe's description against the allow-lists and turn it into a VideoInfo."""
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    container = _container(fmt, streams)
    videos = [s for s in streams if s.get("codec_type") == "video" and not _is_cover(s)]
    if not videos:
        raise InvalidInput("文件中没有视频画面", code="invalid_media", field="file")
    video = videos[0]
    vcodec = str(video.get("codec_name", ""))
    if vcodec not in VIDEO_CODECS[container]:
        raise InvalidInput(
            f"不支持的视频编码“{vcodec}”（{container.upper()} 支持："
            f"{'、'.join(sorted(VIDEO_CODECS[container]))}）",
            code="unsupported_codec",
            field="file",
        )
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    acodec = str(audios[0].get("codec_name", "")) if audios else None
    if acodec is not None and acodec not in AUDIO_CODECS[container]:
        raise InvalidInput(f"不支持的音频编码“{acodec}”", code="unsupported_codec", field="file")
    try:
        duration = float(fmt.get("duration") or video.get("duration") or 0)
    except ValueError:
        duration = 0.0
    if duration <= 0:
        raise InvalidInput("无法确定视频时长，文件可能已损坏", code="invalid_media", field="file")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise InvalidInput("无法读取视频分辨率", code="invalid_media", field="file")
    if width > MAX_DIMENSION or height > MAX_DIMENSION or width * height > MAX_PIXELS:
        # A pixel flood: decoding one frame (the check below, thumbnails, OCR) would need
        # gigabytes; refused before anything decodes it.
        raise InvalidInput(
            f"视频分辨率 {width}×{height} 过大：最大支持 {MAX_DIMENSION} 像素边长、"
            f"共 {MAX_PIXELS // 1_000_000} 百万像素（8K）",
            code="resolution_too_large",
            field="file",
        )
    if _rotation(video) in (90, 270):
        width, height = height, width
    tracks: list[SubtitleTrack] = []
    for n, s in enumerate(x for x in streams if x.get("codec_type") == "subtitle"):
        tags = s.get("tags") or {}
        tracks.append(
            SubtitleTrack(
                index=n,
                codec=str(s.get("codec_name", "")),
                language=tags.get("language"),
                title=tags.get("title"),
            )
        )
    codecs = [f"{s.get('codec_type')}:{s.get('codec_name')}" for s in streams]
    return VideoInfo(
        sha256=sha256,
        size=size,
        container=container,
        duration=round(duration, 3),
        width=width,
        height=height,
        video_codec=vcodec,
        audio_codec=acodec,
        codecs=codecs,
        subtitle_tracks=tracks,
    )


def _is_cover(stream: dict[str, Any]) -> bool:
    return bool((stream.get("disposition") or {}).get("attached_pic"))


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            try:
                return abs(int(float(side["rotation"]))) % 360
            except (TypeError, ValueError):
                return 0
    try:
        return abs(int((stream.get("tags") or {}).get("rotate", 0))) % 360
    except (TypeError, ValueError):
        return 0


def _check_decodes(path: str, tools: Tools) -> None:
    proc = _run(
        [tools.ffmpeg, "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0"]
        + ["-frames:v", "1", "-f", "null", "-"],
        timeout=PROBE_TIMEOUT,
    )
    if proc.returncode != 0:
        raise InvalidInput("视频画面无法解码，文件可能已损坏", code="invalid_media", field="file")


def sha256_of(fh: IO[bytes]) -> tuple[str, int]:
    """Hash and size of a file object, read from the start in chunks."""
    fh.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def ingest_video(
    upload: IO[bytes] | CappedTempFile, *, folder: str | os.PathLike[str], tools: Tools
) -> VideoInfo:
    """Check an uploaded temporary file and store it as ``<sha256>.<container>`` in ``folder``.

    The temporary file is closed (and so deleted) on every path; on success the stored copy is
    a hard link made before closing, so the bytes are never copied.
    """
    try:
        upload.flush()
        sha, size = sha256_of(upload)  # type: ignore[arg-type]
        if size == 0:
            raise InvalidInput("上传的视频文件是空的（0 字节）", code="empty_file", field="file")
        upload.seek(0)
        kind = _check_magic(upload.read(16))
        if kind == "iso":
            _check_iso_boxes(upload, size)  # type: ignore[arg-type]
        path = str(upload.name)
        info = describe(probe(path, tools), sha256=sha, size=size)
        _check_decodes(path, tools)
        target = Path(folder) / info.file_name
        if not target.exists():
            try:
                os.link(path, target)
            except FileExistsError:
                pass  # the same bytes arrived concurrently
            except OSError:
                _copy(upload, target)  # a folder on a filesystem without hard links
        return info
    finally:
        upload.close()


def _copy(upload: IO[bytes] | CappedTempFile, target: Path) -> None:
    partial = target.with_name(f".{target.name}.copy")
    upload.seek(0)
    with open(partial, "wb") as out:
        while chunk := upload.read(CHUNK):
            out.write(chunk)
    os.replace(partial, target)


def store_bytes(data: bytes, *, folder: str | os.PathLike[str], ext: str) -> str:
    """Keep a small file (a subtitle) under its content hash; returns the hash."""
    sha = hashlib.sha256(data).hexdigest()
    target = Path(folder) / f"{sha}.{ext}"
    if not target.exists():
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=folder, prefix=".store-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return sha


def too_large(limit: int) -> TooLarge:
    """The refusal for a video over the configured size."""
    return TooLarge(
        f"视频文件超过上限 {limit // (1024 * 1024)} MB（KEPU_MAX_VIDEO_BYTES）", code="too_large"
    )


# --- derived data (run by the media worker) -----------------------------------------------------


def extract_subtitle_track(path: str, track: int, tools: Tools, *, timeout: float = 600) -> bytes:
    """An embedded text subtitle track converted to SRT by ffmpeg."""
    proc = _run(
        [tools.ffmpeg, "-nostdin", "-v", "error", "-i", path, "-map", f"0:s:{track}"]
        + ["-f", "srt", "-"],
        timeout=timeout,
        binary=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"ffmpeg could not extract subtitle track {track}: "
            f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}"
        )
    return bytes(proc.stdout)


def make_thumbnail(
    path: str, info: VideoInfo, target: str | os.PathLike[str], tools: Tools, *, width: int = 320
) -> None:
    """A JPEG still from early in the video (a second in, or the middle of a short clip)."""
    at = min(1.0, info.duration / 2)
    partial = Path(target).with_name(f".{Path(target).name}.part.jpg")
    try:
        proc = _run(
            [tools.ffmpeg, "-nostdin", "-v", "error", "-y", "-ss", f"{at:.3f}", "-i", path]
            + ["-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4", str(partial)],
            timeout=PROBE_TIMEOUT,
        )
        if proc.returncode != 0 or not partial.exists():
            raise RuntimeError(f"ffmpeg could not make a thumbnail: {proc.stderr.strip()[-300:]}")
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()


@dataclass(frozen=True)
class FrameGeometry:
    """The subtitle band that is cut out of every sampled frame."""

    width: int
    height: int
    crop: str


def subtitle_band(info: VideoInfo, *, max_width: int = 960) -> FrameGeometry:
    """The bottom third of the picture, scaled to at most ``max_width`` pixels wide."""
    band = max(info.height // 3, 16)
    out_w = min(info.width, max_width)
    out_h = max(int(round(band * out_w / info.width)), 8)
    crop = f"crop={info.width}:{band}:0:{info.height - band},scale={out_w}:{out_h}"
    return FrameGeometry(out_w, out_h, crop)


def sample_frames(
    path: str, info: VideoInfo, *, fps: float, tools: Tools
) -> Iterator[tuple[float, bytes, FrameGeometry]]:
    """Raw BGR frames of the subtitle band, ``fps`` per second, with their times in seconds."""
    geometry = subtitle_band(info)
    frame_bytes = geometry.width * geometry.height * 3
    argv = [tools.ffmpeg, "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0"]
    argv += ["-vf", f"fps={fps},{geometry.crop}", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
    # Same as _run: an argv list of the configured ffmpeg, fixed options and our own path.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # nosec B603
    assert proc.stdout is not None
    try:
        n = 0
        while True:
            frame = proc.stdout.read(frame_bytes)
            if len(frame) < frame_bytes:
                break
            yield n / fps, frame, geometry
            n += 1
        if proc.wait() != 0:
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
            raise RuntimeError(f"ffmpeg could not sample frames: {err.strip()[-300:]}")
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def ocr_rate(fps: float, duration: float, max_frames: int) -> float:
    """Frames per second to read for OCR: ``fps``, lowered for a long video so that at most
    ``max_frames`` frames are read (0 = OCR off)."""
    if fps <= 0 or max_frames <= 0:
        return 0.0
    if duration <= 0:
        return fps
    return min(fps, max_frames / duration)
