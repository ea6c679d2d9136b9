def greet(name: str) -> str:
    """What main.py prints: edit it together and run again."""
    return f"Hello, {name}!"
