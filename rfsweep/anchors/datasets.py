"""Ground-truth boxes of a real dataset, read into one table: COCO instances JSON, a Pascal VOC
``Annotations/`` directory, a YOLO labels directory, or CSV / Parquet with image_id, x1, y1, x2, y2,
image_w, image_h.

Every reader gives a :class:`BoxSet`: boxes [x1, y1, x2, y2] in pixels of the original image (float64),
the image each belongs to, and each image's size. COCO crowd boxes and boxes of zero width or height are
skipped (as detectors' training filters do); VOC ``difficult`` objects are kept or skipped as asked. A bad
file is one line naming the file, the record and the field.
"""

from __future__ import annotations

import json
import os
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.core.files import read_bytes

FORMATS = ("coco", "voc", "yolo", "csv", "parquet")
TABLE_COLUMNS = ("image_id", "x1", "y1", "x2", "y2", "image_w", "image_h")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
COCO_SMALL, COCO_MEDIUM = 32**2, 96**2
BOX_FILE_LIMIT = (
    4 << 30
)  # COCO train2017's instances file is 448 MB  # COCO's area ranges: small < 32^2 <= medium < 96^2 <= large


@dataclass
class BoxSet:
    """Boxes of a dataset: ``xyxy`` (n x 4, pixels of the original image), ``image`` (n, index into the
    image arrays), ``image_h`` / ``image_w`` (per image), ``image_ids`` (the dataset's own ids)."""

    xyxy: np.ndarray
    image: np.ndarray
    image_h: np.ndarray
    image_w: np.ndarray
    image_ids: list
    source: str = ""
    skipped: int = 0  # crowd, empty or (on request) difficult boxes left out

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def images(self) -> int:
        return len(self.image_h)

    def size_class(self) -> np.ndarray:
        """0 small, 1 medium, 2 large by COCO's area ranges, on the box's area w x h in the original image."""
        w = self.xyxy[:, 2] - self.xyxy[:, 0]
        h = self.xyxy[:, 3] - self.xyxy[:, 1]
        area = w * h
        return np.where(area < COCO_SMALL, 0, np.where(area < COCO_MEDIUM, 1, 2)).astype(np.int64)

    def sample(self, n: int, seed: int | None) -> BoxSet:
        """n boxes drawn uniformly without replacement (their images kept whole in the image arrays)."""
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(self), size=n, replace=False))
        return BoxSet(self.xyxy[keep], self.image[keep], self.image_h, self.image_w, self.image_ids, self.source)


def _bad(path, record, why: str) -> RFSweepError:
    where = f"record {record}: " if record is not None else ""
    return field_error("boxes", str(path), where + why)


def _number(path, record, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise _bad(path, record, f"field '{name}' must be a finite number, not {value!r}")
    return float(value)


def _finish(path, boxes, image_of, sizes, ids, skipped) -> BoxSet:
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    if len(xyxy) == 0:
        raise _bad(path, None, "holds no box (after skipping crowd and empty boxes)")
    return BoxSet(xyxy, np.asarray(image_of, np.int64), sizes[:, 0], sizes[:, 1], ids, str(path), skipped)


def _check_box(path, record, x1, y1, x2, y2, w, h) -> bool:
    """False for an empty box (skipped); an error for one outside its image or reversed."""
    if x2 < x1 or y2 < y1:
        raise _bad(path, record, f"field 'bbox' is reversed ([{x1}, {y1}, {x2}, {y2}])")
    if x2 == x1 or y2 == y1:
        return False
    slack = 1.0  # annotation tools round to the pixel grid; COCO has boxes ending at w + 0.5
    if x1 < -slack or y1 < -slack or x2 > w + slack or y2 > h + slack:
        raise _bad(path, record, f"field 'bbox' [{x1}, {y1}, {x2}, {y2}] lies outside its {w}x{h} image")
    return True


# ---------------------------------------------------------------- COCO


def read_coco(path: str | Path) -> BoxSet:
    """A COCO instances JSON file: ``images`` (id, width, height) and ``annotations`` (image_id, bbox
    [x, y, w, h], iscrowd)."""
    path = Path(path)
    raw = read_bytes(path, "boxes", BOX_FILE_LIMIT, "box file")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _bad(path, None, f"is not a readable COCO JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _bad(path, None, "has no 'images' list (not a COCO instances file)")
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise _bad(path, None, "has no 'annotations' list (not a COCO instances file)")
    index, sizes, ids = {}, [], []
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise _bad(path, f"images[{k}]", "field 'id' is missing")
        w = _number(path, f"images[{k}]", "width", img.get("width"))
        h = _number(path, f"images[{k}]", "height", img.get("height"))
        if w < 1 or h < 1 or w != int(w) or h != int(h):
            raise _bad(path, f"images[{k}]", f"fields 'width' and 'height' must be integers >= 1, not {w}x{h}")
        index[img["id"]] = len(sizes)
        sizes.append((int(h), int(w)))
        ids.append(img["id"])
    fast = _coco_annotations_fast(path, anns, index, sizes, ids)
    if fast is not None:
        return fast
    boxes, image_of, skipped = [], [], 0
    for k, ann in enumerate(anns):  # record by record: the one-line error names the record at fault
        rec = f"annotations[{k}]"
        if not isinstance(ann, dict):
            raise _bad(path, rec, "is not an object")
        if ann.get("image_id") not in index:
            raise _bad(path, rec, f"field 'image_id' {ann.get('image_id')!r} names no image")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise _bad(path, rec, "field 'bbox' must be [x, y, w, h]")
        x, y, bw, bh = (_number(path, rec, "bbox", v) for v in bbox)
        if ann.get("iscrowd", 0):
            skipped += 1
            continue
        i = index[ann["image_id"]]
        h, w = sizes[i]
        if bw < 0 or bh < 0:
            raise _bad(path, rec, f"field 'bbox' has a negative size ({bw} x {bh})")
        if not _check_box(path, rec, x, y, x + bw, y + bh, w, h):
            skipped += 1
            continue
        boxes.append((x, y, x + bw, y + bh))
        image_of.append(i)
    return _finish(path, boxes, image_of, sizes, ids, skipped)


def _coco_annotations_fast(path, anns, index, sizes, ids) -> BoxSet | None:
    """All annotations at once with numpy (COCO train2017's 860 K boxes in about a second); None when any
    record is malformed or a box is bad, so that the record-by-record reader names it."""
    try:
        bbox = np.array([a["bbox"] for a in anns], dtype=np.float64)
        image_of = np.array([index[a["image_id"]] for a in anns], dtype=np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if bbox.shape != (len(anns), 4) or not np.isfinite(bbox).all() or (bbox[:, 2:] < 0).any():
        return None
    hw = np.asarray(sizes, np.float64).reshape(-1, 2)[image_of]
    x1, y1 = bbox[:, 0], bbox[:, 1]
    x2, y2 = x1 + bbox[:, 2], y1 + bbox[:, 3]
    slack = 1.0
    inside = (x1 >= -slack) & (y1 >= -slack) & (x2 <= hw[:, 1] + slack) & (y2 <= hw[:, 0] + slack)
    empty = (bbox[:, 2] == 0) | (bbox[:, 3] == 0)
    if not (inside | crowd | empty).all():
        return None
    keep = ~crowd & ~empty
    xyxy = np.stack([x1, y1, x2, y2], axis=1)[keep]
    if len(xyxy) == 0:
        return None
    sz = np.asarray(sizes, np.int64).reshape(-1, 2)
    return BoxSet(xyxy, image_of[keep], sz[:, 0], sz[:, 1], ids, str(path), int((~keep).sum()))


# ---------------------------------------------------------------- VOC


def read_voc(path: str | Path, difficult: str = "include") -> BoxSet:
    """A Pascal VOC ``Annotations/`` directory of XML files (size/width, size/height, object/bndbox)."""
    if difficult not in ("include", "skip"):
        raise field_error("voc_difficult", difficult, "must be include or skip")
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml")
    if not files:
        raise _bad(path, None, "holds no .xml annotation file")
    boxes, image_of, sizes, ids, skipped = [], [], [], [], 0
    for f in files:
        try:
            root = ET.fromstring(read_bytes(f, "boxes", what="VOC annotation"))
        except ET.ParseError as exc:
            raise _bad(f, None, f"is not readable XML ({type(exc).__name__})") from None

        def num(node, name, rec, f=f):
            el = node.find(name)
            if el is None or el.text is None:
                raise _bad(f, rec, f"field '{name}' is missing")
            try:
                return float(el.text)
            except ValueError:
                raise _bad(f, rec, f"field '{name}' must be a number, not {el.text!r}") from None

        size = root.find("size")
        if size is None:
            raise _bad(f, "size", "field 'size' is missing")
        w, h = num(size, "width", "size"), num(size, "height", "size")
        if w < 1 or h < 1:
            raise _bad(f, "size", f"fields 'width' and 'height' must be >= 1, not {w}x{h}")
        i = len(sizes)
        sizes.append((int(h), int(w)))
        ids.append(f.stem)
        for k, obj in enumerate(root.findall("object")):
            rec = f"object[{k}]"
            if difficult == "skip" and (obj.findtext("difficult") or "0").strip() == "1":
                skipped += 1
                continue
            bb = obj.find("bndbox")
            if bb is None:
                raise _bad(f, rec, "field 'bndbox' is missing")
            x1, y1, x2, y2 = (num(bb, n, rec) for n in ("xmin", "ymin", "xmax", "ymax"))
            if not _check_box(f, rec, x1, y1, x2, y2, w, h):
                skipped += 1
                continue
            boxes.append((x1, y1, x2, y2))
            image_of.append(i)
    return _finish(path, boxes, image_of, sizes, ids, skipped)


# ---------------------------------------------------------------- YOLO


def image_size(path: Path) -> tuple[int, int] | None:
    """(h, w) read from a PNG's or a JPEG's header, without decoding it; None when it is neither."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return h, w
            if head[:2] != b"\xff\xd8":
                return None
            fh.seek(2)
            while True:
                marker = fh.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    return None
                if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                    continue
                length = struct.unpack(">H", fh.read(2))[0]
                if marker[1] in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                    h, w = struct.unpack(">xHH", fh.read(5))
                    return h, w
                fh.seek(length - 2, os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def read_yolo(path: str | Path, size: tuple[int, int] | None = None) -> BoxSet:
    """A YOLO labels directory: one ``.txt`` per image, lines ``class cx cy w h`` normalised to [0, 1]. Image
    sizes from the images beside the labels (``../images/NAME.jpg`` or in the same folder), or ``size``
    ((h, w), every image)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix == ".txt")
    if not files:
        raise _bad(path, None, "holds no .txt label file")
    folders = [path, path.parent / "images", path.parent.parent / "images" / path.name]
    boxes, image_of, sizes, ids = [], [], [], []
    for f in files:
        hw = size
        if hw is None:
            found = [d / (f.stem + s) for d in folders for s in IMAGE_SUFFIXES if (d / (f.stem + s)).is_file()]
            hw = image_size(found[0]) if found else None
            if hw is None:
                raise _bad(f, None, "has no PNG or JPEG image beside it to give its size: give --image-size")
        h, w = hw
        i = len(sizes)
        sizes.append((h, w))
        ids.append(f.stem)
        try:
            lines = read_bytes(f, "boxes", what="YOLO label file").decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise _bad(f, None, f"is not readable text ({type(exc).__name__})") from None
        for k, line in enumerate(lines):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 5:
                raise _bad(f, f"line {k + 1}", "must be 'class cx cy w h'")
            try:
                cx, cy, bw, bh = (float(v) for v in parts[1:5])
            except ValueError:
                raise _bad(f, f"line {k + 1}", "fields 'cx cy w h' must be numbers") from None
            if not all(0 <= v <= 1 for v in (cx, cy, bw, bh)):
                raise _bad(f, f"line {k + 1}", "fields 'cx cy w h' must be normalised to [0, 1]")
            x1, y1, x2, y2 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
            if not _check_box(f, f"line {k + 1}", x1, y1, x2, y2, w, h):
                continue
            boxes.append((x1, y1, x2, y2))
            image_of.append(i)
    return _finish(path, boxes, image_of, sizes, ids, 0)


# ---------------------------------------------------------------- tables


def read_table(path: str | Path) -> BoxSet:
    """CSV or Parquet with columns image_id, x1, y1, x2, y2, image_w, image_h (a row a box)."""
    import pyarrow as pa

    path = Path(path)
    raw = pa.BufferReader(read_bytes(path, "boxes", BOX_FILE_LIMIT, "box file"))
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(raw)
        else:
            from pyarrow import csv

            table = csv.read_csv(raw)
    except (OSError, pa.ArrowException) as exc:
        why = " ".join(str(exc).split())[:160]
        raise _bad(path, None, f"is not a readable table ({why})") from None
    missing = [c for c in TABLE_COLUMNS if c not in table.column_names]
    if missing:
        raise _bad(path, None, f"has no column {missing[0]!r} (needs {', '.join(TABLE_COLUMNS)})")
    cols = {}
    for c in TABLE_COLUMNS[1:]:
        try:
            cols[c] = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        except (pa.ArrowException, ValueError, TypeError):
            raise _bad(path, None, f"column {c!r} must be numbers") from None
        bad = ~np.isfinite(cols[c])
        if bad.any():
            raise _bad(path, f"row {int(np.argmax(bad)) + 1}", f"field {c!r} must be a finite number")
    ids_col = table.column("image_id").to_pylist()
    index, sizes, ids, boxes, image_of, skipped = {}, [], [], [], [], 0
    for r, img in enumerate(ids_col):
        w, h = cols["image_w"][r], cols["image_h"][r]
        if img not in index:
            if w < 1 or h < 1 or w != int(w) or h != int(h):
                raise _bad(path, f"row {r + 1}", f"fields 'image_w' and 'image_h' must be integers >= 1, not {w}x{h}")
            index[img] = len(sizes)
            sizes.append((int(h), int(w)))
            ids.append(img)
        elif sizes[index[img]] != (int(h), int(w)):
            raise _bad(path, f"row {r + 1}", f"image {img!r} has two sizes")
        x1, y1, x2, y2 = (cols[c][r] for c in ("x1", "y1", "x2", "y2"))
        if not _check_box(path, f"row {r + 1}", x1, y1, x2, y2, w, h):
            skipped += 1
            continue
        boxes.append((x1, y1, x2, y2))
        image_of.append(index[img])
    return _finish(path, boxes, image_of, sizes, ids, skipped)


def detect_format(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir():
        names = [q.suffix.lower() for q in p.iterdir()]
        if ".xml" in names:
            return "voc"
        if ".txt" in names:
            return "yolo"
        raise _bad(p, None, "is a directory with neither VOC .xml nor YOLO .txt files")
    suffix = p.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    raise _bad(p, None, "must be a COCO .json, a VOC or YOLO directory, or a .csv / .parquet table")


def read_boxes(path: str | Path, fmt: str | None = None, *, voc_difficult: str = "include", image_size=None) -> BoxSet:
    """Boxes from ``path`` in ``fmt`` (one of coco, voc, yolo, csv, parquet; None: from the path)."""
    p = Path(path)
    if not p.exists():
        raise field_error("boxes", str(path), "does not exist")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise field_error("boxes_format", fmt, f"must be one of {', '.join(FORMATS)}")
    if fmt in ("voc", "yolo") and not p.is_dir():
        raise _bad(p, None, f"{fmt} boxes are a directory of label files")
    if fmt not in ("voc", "yolo") and not p.is_file():
        raise _bad(p, None, "must be a regular file")
    if fmt == "coco":
        return read_coco(p)
    if fmt == "voc":
        return read_voc(p, voc_difficult)
    if fmt == "yolo":
        return read_yolo(p, image_size)
    return read_table(p)


__all__ = ["BoxSet", "FORMATS", "read_boxes", "read_coco", "read_voc", "read_yolo", "read_table", "image_size"]
