"""Pillow: make an image and encode it as PNG (zlib and libpng-style code in the wheel)."""
import io

from PIL import Image, ImageDraw


def main():
    image = Image.new("RGB", (64, 32), "white")
    ImageDraw.Draw(image).rectangle([8, 8, 40, 24], fill=(200, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    assert data.startswith(b"\x89PNG"), data[:8]
    again = Image.open(io.BytesIO(data))
    assert again.size == (64, 32) and again.getpixel((10, 10)) == (200, 30, 30)
    print("ok pillow", len(data))


if __name__ == "__main__":
    main()
