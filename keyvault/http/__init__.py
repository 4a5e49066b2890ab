"""HTTP helpers shared by the blueprints, below them and above the service: problem+json
answers (problems), where a key is read from (credentials), what every request carries
(context), the one pipeline for a presented key in HTTP terms (gate), the one error handler
(errors), and the browser pages' helpers and forms (browser, forms)."""
