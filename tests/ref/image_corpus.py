"""The image corpus of test_image_pixels.py, written with Pillow (and, where Pillow cannot
write a layout, by hand: 16-bit RGB/RGBA/gray+alpha PNG, Adam7-interlaced PNG, a CMYK
JPEG without its Adobe marker). Deterministic: the same files every run."""
import struct
import zlib

import numpy as np
from PIL import Image


def _scene(w, h, seed):
    """RGB uint8 [h, w, 3]: gradients, hard edges (for the filters' overshoot and
    clipping) and some noise. float32 arithmetic: 4000 x 3000 in well under a second."""
    rng = np.random.default_rng(seed)
    fx = (np.arange(w, dtype=np.float32) / max(w - 1, 1))[None, :]
    fy = (np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None]
    img = np.empty((h, w, 3), np.float32)
    img[..., 0] = 255 * fx
    img[..., 1] = 255 * fy
    img[..., 2] = 127 + 120 * np.sin(6.0 * fx + 4.0 * fy)
    cx = (np.arange(w) // max(w // 7, 1))[None, :]
    cy = (np.arange(h) // max(h // 5, 1))[:, None]
    img *= np.where((cx + cy) % 2 == 0, np.float32(0.35), np.float32(1.0))[..., None]  # checkerboard edges
    img += rng.integers(-24, 25, size=img.shape, dtype=np.int8)
    return np.clip(img, 0, 255).astype(np.uint8)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path, samples, color_type, depth, interlace=False):
    """samples: [h, w, c] of uint8 (depth 8) or uint16 (depth 16), written big-endian,
    filter 0 on every row; Adam7 when interlace."""
    h, w = samples.shape[:2]
    dt = ">u2" if depth == 16 else "u1"

    def rows(a):
        return b"".join(b"\0" + a[i].astype(dt).tobytes() for i in range(a.shape[0]))

    if not interlace:
        raw = rows(samples)
    else:
        raw = b""
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += rows(sub)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, 6)) + _png_chunk(b"IEND", b""))


def _png_gray_lowbit(path, gray, depth):
    """Gray PNG of 1, 2 or 4 bits a sample (gray: values < 2**depth), rows packed
    most significant bits first."""
    h, w = gray.shape
    per = 8 // depth
    padded = np.zeros((h, -(-w // per) * per), np.uint8)
    padded[:, :w] = gray
    packed = np.zeros((h, padded.shape[1] // per), np.uint8)
    for k in range(per):
        packed |= (padded[:, k::per] << (8 - depth * (k + 1))).astype(np.uint8)
    raw = b"".join(b"\0" + packed[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _strip_adobe_marker(data):
    """The JPEG without its APP14 "Adobe" segment."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        m, n = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if m == 0xEE and data[i + 4:i + 9] == b"Adobe":
            return data[:i] + data[i + 2 + n:]
        if m == 0xDA:
            break
        i += 2 + n
    raise ValueError("no Adobe marker")


def write_corpus(d, source):
    """Writes the supported images into folder d; returns [(name, path)] in a fixed order."""
    out = []

    def add(name):
        p = f"{d}/{name}"
        out.append((name, p))
        return p

    def rgb(w, h, seed):
        return Image.fromarray(_scene(w, h, seed), "RGB")

    rgb(1, 1, 1).save(add("rgb_1x1.png"))
    rgb(2, 3, 2).save(add("rgb_2x3.png"))
    rgb(3, 1, 3).save(add("rgb_3x1.png"))
    rgb(640, 480, 4).save(add("rgb_640x480.png"))
    rgb(111, 113, 5).save(add("rgb_111x113_up.png"))
    # 4 x 4 tiles of a 1000 x 750 scene: cheaper to make than one large one
    Image.fromarray(np.tile(_scene(1000, 750, 6), (4, 4, 1)), "RGB").save(add("rgb_4000x3000.jpg"), quality=90)
    rgb(2400, 16, 7).save(add("wide_2400x16.png"))
    rgb(9, 2000, 8).save(add("tall_9x2000.png"))
    rgb(1, 300, 9).save(add("tall_1x300.png"))
    rgb(1000, 5, 10).save(add("wide_1000x5.jpg"), quality=95)
    rgb(640, 480, 11).save(add("rgb_640x480_q90_420.jpg"), quality=90)
    rgb(333, 250, 12).save(add("rgb_333x250_444.jpg"), quality=95, subsampling=0)
    rgb(333, 250, 13).save(add("rgb_333x250_422.jpg"), quality=85, subsampling=1)
    rgb(801, 601, 14).save(add("rgb_801x601_progressive.jpg"), quality=90, progressive=True)
    # RGB colour space (Adobe transform 0), not YCbCr
    rgb(160, 120, 28).save(add("rgb_colorspace_160x120.jpg"), quality=90, keep_rgb=True)
    sc = _scene(300, 200, 15)
    Image.fromarray(sc[..., 1], "L").save(add("gray_300x200.png"))
    Image.fromarray(sc[..., 0], "L").save(add("gray_300x200.jpg"), quality=90)
    alpha = (np.arange(300)[None, :] * 255 // 299 * np.ones((200, 1))).astype(np.uint8)
    Image.fromarray(np.dstack([sc[..., 2], alpha]), "LA").save(add("gray_alpha_300x200.png"))
    Image.fromarray(np.dstack([sc, alpha]), "RGBA").save(add("rgba_300x200.png"))
    rgb(300, 200, 16).quantize(colors=64).save(add("palette_300x200.png"))
    pal = rgb(257, 190, 17).quantize(colors=16)
    pal.info["transparency"] = 3
    pal.save(add("palette_trns_257x190.png"), transparency=3)
    Image.fromarray(sc[..., 1] > 128).save(add("bilevel_300x200.png"))
    _png_gray_lowbit(add("gray2bit_150x101.png"), sc[:101, :150, 0] >> 6, 2)
    _png_gray_lowbit(add("gray4bit_151x100.png"), sc[:100, :151, 2] >> 4, 4)
    wide16 = (np.arange(250 * 180, dtype=np.uint32).reshape(180, 250) * 29 % 65536).astype(np.uint16)
    small16 = (_scene(250, 180, 18)[..., 0].astype(np.uint16) * 3 // 4)  # all <= 255: the clip does not act
    Image.fromarray(wide16).save(add("gray16_250x180.png"))
    Image.fromarray(small16).save(add("gray16_low_250x180.png"))
    s16 = _scene(250, 180, 19).astype(np.uint16) * 257 + np.uint16(77)
    _png(add("rgb16_250x180.png"), s16, 2, 16)
    _png(add("rgba16_250x180.png"), np.dstack([s16, s16[..., :1]]), 6, 16)
    _png(add("gray_alpha16_250x180.png"), np.dstack([s16[..., 1], s16[..., 2]]), 4, 16)
    _png(add("interlaced_rgb_203x157.png"), _scene(203, 157, 20), 2, 8, interlace=True)
    _png(add("interlaced_rgba16_61x47.png"), np.dstack([s16[:47, :61], s16[:47, :61, :1]]), 6, 16, interlace=True)
    cmyk = Image.fromarray(np.dstack([_scene(320, 240, 21), _scene(320, 240, 22)[..., :1]]), "CMYK")
    cmyk.save(add("cmyk_adobe_320x240.jpg"), quality=90)
    with open(f"{d}/cmyk_adobe_320x240.jpg", "rb") as f:
        data = f.read()
    with open(add("cmyk_no_adobe_320x240.jpg"), "wb") as f:
        f.write(_strip_adobe_marker(data))
    # EXIF orientation 6 (rotate 90): neither CLIPImageProcessor nor modserve applies it
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb(240, 160, 23).save(add("exif_rotated_240x160.jpg"), quality=90, exif=exif)
    # APNG: Pillow opens frame 0 (the default image); modserve decodes the IDAT image
    rgb(120, 90, 24).save(add("apng_120x90.png"), save_all=True, append_images=[rgb(120, 90, 25)], duration=100)
    # MPO (two JPEGs): Pillow opens frame 0; modserve decodes the first JPEG
    rgb(200, 150, 26).save(add("mpo_200x150.mpo"), format="MPO", save_all=True, append_images=[rgb(200, 150, 27)])
    # YCCK: Pillow cannot write it; a 64x48 file written by libjpeg (docs/encoder.md)
    out.append(("ycck_64x48.jpg", f"{source}/tests/data/ycck.jpg"))
    out.append(("demo_160x120.png", f"{source}/tests/data/demo.png"))
    out.append(("demo_160x120.jpg", f"{source}/tests/data/demo.jpg"))
    return out


def write_refused(d):
    """Formats modserve refuses and Pillow reads: [(name, path, the word the error must
    carry)]. Each file is written by Pillow and read back by it."""
    img = Image.fromarray(_scene(40, 30, 30), "RGB")
    cases = [("GIF", "gif", {}, "GIF"), ("BMP", "bmp", {}, "BMP"), ("WEBP", "webp", {}, "WebP"),
             ("TIFF", "tiff", {}, "TIFF"), ("ICO", "ico", {}, "ICO"), ("PPM", "ppm", {}, "PNM"),
             ("JPEG2000", "jp2", {}, "JPEG 2000"), ("AVIF", "avif", {}, "AVIF"), ("QOI", "qoi", {}, "QOI"),
             ("DDS", "dds", {}, "DDS"), ("SGI", "sgi", {}, "SGI"), ("PCX", "pcx", {}, "PCX"),
             ("ICNS", "icns", {}, "ICNS"), ("BLP", "blp", {}, "BLP"), ("IM", "im", {}, "IM"),
             ("MSP", "msp", {}, "MSP"), ("XBM", "xbm", {}, "XBM"), ("TGA", "tga", {}, "unknown format")]
    out = []
    for fmt, ext, kw, word in cases:
        p = f"{d}/refused.{ext}"
        src = (img.resize((64, 64)) if fmt == "ICNS" else img.convert("1") if fmt in ("MSP", "XBM")
               else img.quantize(16) if fmt == "BLP" else img)
        try:
            src.save(p, format=fmt, **kw)
        except (KeyError, OSError, ValueError) as e:
            out.append((fmt, None, f"Pillow cannot write {fmt}: {e}"))
            continue
        Image.open(p).convert("RGB").load()  # Pillow reads what it wrote
        out.append((fmt, p, word))
    return out
