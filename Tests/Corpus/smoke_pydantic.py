"""pydantic: pydantic-core (Rust) and sysconfig's computed import of _sysconfigdata."""
from pydantic import BaseModel, ValidationError, field_validator


class Order(BaseModel):
    id: int
    items: list[str]
    total: float

    @field_validator("items")
    @classmethod
    def not_empty(cls, value):
        if not value:
            raise ValueError("no items")
        return value


def main():
    order = Order.model_validate({"id": "7", "items": ["tea"], "total": "3.5"})
    assert order.id == 7 and order.total == 3.5
    try:
        Order(id=1, items=[], total=1)
    except ValidationError as error:
        assert "no items" in str(error)
    else:
        raise SystemExit("validation did not fail")
    print("ok pydantic", order.model_dump_json())


if __name__ == "__main__":
    main()
