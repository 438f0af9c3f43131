"""Azure Personalizer's REST API served by Kairos (see service.rest.api for the routes)."""
