"""SQLAlchemy: the ORM on SQLite (the dialect is imported by name when the engine is made)."""
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))


def main():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([User(name="ada"), User(name="grace")])
        session.commit()
        names = session.scalars(select(User.name).where(User.name.like("%a%")).order_by(User.name)).all()
    assert names == ["ada", "grace"], names
    print("ok sqlalchemy", names)


if __name__ == "__main__":
    main()
