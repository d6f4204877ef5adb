"""The browser pages: the playground at /, the operators' page at /admin, and the login that
gives a browser its key once. Jinja2 templates (templates/) with htmx (static/)."""
