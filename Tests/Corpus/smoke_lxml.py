"""lxml: libxml2 and libxslt through Cython extensions."""
from lxml import etree


def main():
    root = etree.fromstring(b"<shop><item price='3'>tea</item><item price='5'>cake</item></shop>")
    names = root.xpath("//item[@price > 4]/text()")
    assert names == ["cake"], names
    print("ok lxml", etree.LXML_VERSION, names)


if __name__ == "__main__":
    main()
