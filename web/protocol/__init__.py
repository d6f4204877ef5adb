"""The wire formats: request bodies (strict msgspec Structs) and response objects."""
