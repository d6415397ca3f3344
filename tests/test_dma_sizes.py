"""pytest_sev.dma.sizes: pool size parsing and the swiotlb= argument."""

import pytest

from pytest_sev.dma.sizes import AUTO, PoolSize, default_matrix, parse_size, parse_sizes, sort_key


@pytest.mark.parametrize(
    "text, slabs, label",
    [
        ("262144", 262144, "512M"),  # the README's swiotlb=262144
        ("32768", 32768, "64M"),
        ("1", 1, "2K"),
        ("256K", 128, "256K"),
        ("1M", 512, "1M"),
        ("8M", 4096, "8M"),
        ("64M", 32768, "64M"),
        ("512M", 262144, "512M"),
        ("1G", 524288, "1G"),
        ("1g", 524288, "1G"),
        ("64MiB", 32768, "64M"),
        (" 2M ", 1024, "2M"),
        ("4K", 2, "4K"),
    ],
)
def test_parse_size(text, slabs, label):
    s = parse_size(text)
    assert s.slabs == slabs
    assert s.bytes == slabs * 2048
    assert s.label == label


def test_auto():
    s = parse_size("auto")
    assert s is AUTO or s == AUTO
    assert s.slabs is None and s.bytes is None and s.label == "auto"
    assert s.cmdline(force=True) == "swiotlb=force" and s.cmdline(force=False) == ""


def test_cmdline():
    assert parse_size("512M").cmdline(force=False) == "swiotlb=262144"
    assert parse_size("1M").cmdline(force=True) == "swiotlb=512,force"


@pytest.mark.parametrize("bad", ["-1", "0", "0M", "1.5M", "abc", "3K", "", "1T", "2G", "M", "1 M"])
def test_invalid(bad):
    with pytest.raises(ValueError) as e:
        parse_size(bad)
    msg = str(e.value)
    assert "\n" not in msg and repr(bad) in msg


def test_cap_is_configurable():
    assert parse_size("2G", max_bytes=4 << 30).label == "2G"
    with pytest.raises(ValueError, match="exceeds the cap"):
        parse_size("2M", max_bytes=1 << 20)


def test_kernel_rounds_to_segments():
    assert PoolSize(1).kernel_slabs == 128
    assert PoolSize(128).kernel_slabs == 128
    assert PoolSize(129).kernel_slabs == 256
    assert AUTO.kernel_slabs is None


def test_parse_sizes_and_default():
    assert [s.label for s in parse_sizes("1M, 8M 64M,,512M auto")] == ["1M", "8M", "64M", "512M", "auto"]
    assert [s.label for s in default_matrix()] == ["1M", "8M", "64M", "512M", "auto"]
    with pytest.raises(ValueError, match="repeats 1M"):
        parse_sizes("1M 512")
    with pytest.raises(ValueError, match="no SWIOTLB pool sizes"):
        parse_sizes(" , ")
    with pytest.raises(ValueError, match="'3K'"):
        parse_sizes("1M,3K")


def test_sort_key_puts_auto_last():
    sizes = parse_sizes("auto 64M 256K 1G")
    assert [s.label for s in sorted(sizes, key=sort_key)] == ["256K", "64M", "1G", "auto"]
