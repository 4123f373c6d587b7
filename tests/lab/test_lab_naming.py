"""Names and addresses derived from a lab index (pure, no root needed)."""

import pytest
from virtsdk_lab.naming import IFNAMSIZ, MAX_INDEX, LabNames, host_letter


def test_names_of_a_two_host_lab():
    names = LabNames("vsdk", 3)
    assert names.slug == "vsdk-3"
    assert names.bridge == "vsdk3br"
    assert names.gateway == "198.18.3.1"
    assert names.cidr == "198.18.3.0/24"
    assert [names.host_name(i) for i in (0, 1)] == ["vsdk-a", "vsdk-b"]
    assert [names.netns(i) for i in (0, 1)] == ["vsdk3-a", "vsdk3-b"]
    assert [names.veth(i) for i in (0, 1)] == ["vsdk3a", "vsdk3b"]
    assert [names.address(i) for i in (0, 1)] == ["198.18.3.11", "198.18.3.12"]


def test_interface_names_fit_the_kernel_limit_for_every_index_and_host():
    for index in (1, 99, MAX_INDEX):
        names = LabNames("a-very-long-lab-name", index)
        assert len(names.bridge) <= IFNAMSIZ
        assert len(names.veth(25)) <= IFNAMSIZ


def test_addresses_stay_in_the_benchmarking_range():
    names = LabNames("vsdk", MAX_INDEX)
    assert names.address(25).startswith("198.18.254.")
    assert int(names.address(25).rsplit(".", 1)[1]) < 255


@pytest.mark.parametrize("index", [0, MAX_INDEX + 1, -1])
def test_index_out_of_range_is_rejected(index):
    with pytest.raises(ValueError, match="lab index"):
        LabNames("vsdk", index)


@pytest.mark.parametrize("name", ["", "a b", "x/y", "semi;colon"])
def test_bad_lab_name_is_rejected(name):
    with pytest.raises(ValueError, match="lab name"):
        LabNames(name, 1)


def test_host_letters_and_their_limit():
    assert host_letter(0) == "a"
    assert host_letter(25) == "z"
    with pytest.raises(ValueError):
        host_letter(26)
