"""A slow sales service the app asks one region at a time (step 10). You do not need to edit this file.

``count(region)`` takes HANDSON_SLEEP seconds, as a query over a large table would, and
returns the region's sales: a whole number, the same every time for the same region. The
region "offline" cannot be reached: after the wait it raises ConnectionError, as a network
client does.
"""
import time
import zlib

from django.conf import settings

REGIONS = ("north", "south", "east", "west")
OFFLINE = "offline"  # the region whose service never answers


def count(region):
    """The sales of ``region`` (after HANDSON_SLEEP seconds), or ConnectionError for OFFLINE."""
    time.sleep(settings.HANDSON_SLEEP)
    if region == OFFLINE:
        raise ConnectionError(f"the sales service of region {region!r} does not answer")
    return zlib.crc32(region.encode()) % 1000


def regions_from_form(form):
    """The regions of the Step10 form ("north,south,..."); ValueError, saying what is wrong, for a bad list."""
    regions = [region.strip() for region in (form.get("regions") or "").split(",") if region.strip()]
    if not 1 <= len(regions) <= 20 or not all(region.isascii() and region.isalpha() for region in regions):
        raise ValueError("regions: give 1 to 20 region names, letters only, separated by commas "
                         f"(e.g. {','.join(REGIONS)}).")
    return regions
