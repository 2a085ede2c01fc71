"""PyYAML with its C loader (libyaml)."""
import yaml


def main():
    assert yaml.__with_libyaml__, "the C extension did not load"
    document = yaml.load("a: 1\nb: [x, y]\n", Loader=yaml.CSafeLoader)
    assert document == {"a": 1, "b": ["x", "y"]}, document
    print("ok yaml", yaml.dump(document, Dumper=yaml.CSafeDumper).strip().replace("\n", "; "))


if __name__ == "__main__":
    main()
