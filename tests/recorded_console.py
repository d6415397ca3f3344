"""Read the named sections of a recorded guest console (fixtures/recorded/)."""


def section(text: str, name: str) -> str:
    """The part of a recorded guest console after '=== NAME' up to the next '=== '."""
    out, on = [], False
    for line in text.splitlines():
        if line.startswith("=== "):
            on = line.startswith(f"=== {name}")
            continue
        if on:
            out.append(line)
    return "\n".join(out)
