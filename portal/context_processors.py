def navigation(request):
    """The advertiser the dashboard is showing, for the navigation (set by portal.views)."""
    return {"current_advertiser": getattr(request, "advertiser", None)}
