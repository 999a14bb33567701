"""Slug store settings: the s3:// location, object keys, and the flags' validation (pure)."""

from __future__ import annotations

import datetime

import pytest

from controlplane.config import ControlConfig
from controlplane.s3slugs import S3Location, stale_uploads
from controlplane.slugstore import LocalSlugStore, open_slug_store

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, bucket, prefix, key", [
    ("s3://acme-slugs/dynomesh/prod", "acme-slugs", "dynomesh/prod", "dynomesh/prod/ID.tar.gz"),
    ("s3://acme-slugs/dynomesh/", "acme-slugs", "dynomesh", "dynomesh/ID.tar.gz"),
    ("s3://acme.slugs", "acme.slugs", "", "ID.tar.gz"),
    ("s3://abc/", "abc", "", "ID.tar.gz"),
])
def test_a_location_is_a_bucket_and_a_prefix_of_keys(text, bucket, prefix, key):
    location = S3Location.parse(text)
    assert (location.bucket, location.prefix, location.key("ID")) == (bucket, prefix, key)
    assert location.key_prefix == (f"{prefix}/" if prefix else "")


@pytest.mark.parametrize("text, message", [
    ("/srv/slugs", "must be s3://BUCKET/PREFIX"),
    ("https://acme-slugs.s3.amazonaws.com/x", "must be s3://BUCKET/PREFIX"),
    ("s3://Acme/x", "not an S3 bucket name"),
    ("s3://ab/x", "not an S3 bucket name"),
    ("s3://acme_slugs/x", "not an S3 bucket name"),
    ("s3://acme..slugs/x", "not an S3 bucket name"),
    ("s3://-acme/x", "not an S3 bucket name"),
    ("s3://acme-slugs/a//b", "empty path segment"),
])
def test_a_bad_location_is_refused_naming_the_flag(text, message):
    with pytest.raises(ValueError, match="--slug-store") as caught:
        S3Location.parse(text)
    assert message in str(caught.value)


def test_the_config_picks_the_store_and_checks_its_settings(tmp_path):
    assert isinstance(open_slug_store(ControlConfig(home=tmp_path)), LocalSlugStore)
    config = ControlConfig(home=tmp_path, slug_store="s3://acme-slugs/p",
                           slug_store_endpoint="http://127.0.0.1:9000",
                           slug_store_region="eu-west-1")
    store = open_slug_store(config)
    assert store.describe() == "slugs in s3://acme-slugs/p at http://127.0.0.1:9000"
    assert (store.settings.region, store.settings.part_size) == ("eu-west-1", 8 * 2**20)
    with pytest.raises(ValueError, match="at least 5 MiB"):
        ControlConfig(home=tmp_path, slug_store="s3://acme-slugs/p", slug_part_size=2**20)
    with pytest.raises(ValueError, match="--slug-store-endpoint must be an http"):
        ControlConfig(home=tmp_path, slug_store="s3://acme-slugs/p",
                      slug_store_endpoint="127.0.0.1:9000")


def test_up_passes_the_slug_store_flags_to_the_control_plane(tmp_path):
    from onebox.config import UpConfig

    assert UpConfig(home=tmp_path).slug_store_args() == []
    config = UpConfig(home=tmp_path, slug_store="s3://acme-slugs/p",
                      slug_store_endpoint="http://127.0.0.1:9000")
    assert config.slug_store_args() == ["--slug-store", "s3://acme-slugs/p",
                                        "--slug-store-endpoint", "http://127.0.0.1:9000"]
    with pytest.raises(ValueError, match="--slug-store must be s3://"):
        UpConfig(home=tmp_path, slug_store="/srv/slugs")


def test_only_uploads_older_than_a_day_count_as_left_by_a_crash():
    now = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)
    uploads = [{"Key": key, "UploadId": key, "Initiated": now - age} for key, age in (
        ("running", datetime.timedelta(minutes=5)),
        ("almost", datetime.timedelta(hours=23, minutes=59)),
        ("left", datetime.timedelta(days=1, seconds=1)),
        ("ancient", datetime.timedelta(days=30)))]
    assert [u["Key"] for u in stale_uploads(uploads, now)] == ["left", "ancient"]
