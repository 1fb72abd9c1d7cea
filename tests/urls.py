"""No URLs: the event bus has no views."""
urlpatterns: list = []
