"""Names a maintainer script draws at random when a package is installed are derived from the
stage's key: the same stage gives the same image."""

from distonet.stages.packages import settle_drawn_at_install

RANDOM = ("## DO NOT EDIT OR REMOVE THIS FILE!\n"
          "InitiatorName=iqn.1993-08.org.debian:01:{}\n")


def stage(tmp_path, name, drawn, in_upper=True):
    merged, upper = tmp_path / name / "merged", tmp_path / name / "upper"
    for root in (merged, upper) if in_upper else (merged,):
        (root / "etc/iscsi").mkdir(parents=True)
        (root / "etc/iscsi/initiatorname.iscsi").write_text(RANDOM.format(drawn))
        (root / "etc/iscsi/initiatorname.iscsi").chmod(0o600)
    upper.mkdir(parents=True, exist_ok=True)
    return merged, upper


def test_an_initiator_name_drawn_at_install_is_derived_from_the_stage(tmp_path):
    names = []
    for n, drawn in enumerate(("9d5e49977366", "414045e2c459")):
        merged, upper = stage(tmp_path, f"build{n}", drawn)
        settle_drawn_at_install(merged, upper, "ab" * 32)
        names.append((merged / "etc/iscsi/initiatorname.iscsi").read_text())
        assert (merged / "etc/iscsi/initiatorname.iscsi").stat().st_mode & 0o777 == 0o600
    assert names[0] == names[1] and "9d5e49977366" not in names[0]
    assert names[0].startswith("## DO NOT EDIT") and "InitiatorName=iqn.1993-08.org.debian:01:" in names[0]
    merged, upper = stage(tmp_path, "other", "9d5e49977366")
    settle_drawn_at_install(merged, upper, "cd" * 32)                       # another stage: another name
    assert (merged / "etc/iscsi/initiatorname.iscsi").read_text() != names[0]


def test_a_name_made_by_a_layer_below_is_left_alone(tmp_path):
    merged, upper = stage(tmp_path, "above", "9d5e49977366", in_upper=False)
    settle_drawn_at_install(merged, upper, "ab" * 32)
    assert "9d5e49977366" in (merged / "etc/iscsi/initiatorname.iscsi").read_text()


def test_a_secret_drawn_at_install_is_removed(tmp_path):
    merged, upper = stage(tmp_path, "munge", "9d5e49977366")
    for root in (merged, upper):
        (root / "etc/munge").mkdir(parents=True)
        (root / "etc/munge/munge.key").write_bytes(b"\x8a" * 128)
    settle_drawn_at_install(merged, upper, "ab" * 32)
    assert not (merged / "etc/munge/munge.key").exists()
    dropin = (merged / "etc/systemd/system/munge.service.d/distonet-site-secret.conf").read_text()
    assert "[Unit]\nConditionPathExists=/etc/munge/munge.key\n" in dropin   # skipped, not failed, until given
