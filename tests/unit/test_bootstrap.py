"""bootstrap's argv and its decision to reuse or save the package lists."""

from distonet.stages.base import HostFacts
from distonet.stages.bootstrap import Bootstrap, apt_lines, bootstrap_argv, lists_cache
from tests.helpers import MIRROR, SECURITY, plan_of, write
from tests.recording import RecordingRunner


def host(tmp_path, proxy=None):
    return HostFacts(mirror=MIRROR, cache=tmp_path / "cache", work=tmp_path / "work", proxy=proxy,
                     security_mirror=SECURITY)


def test_mmdebstrap_argv_uses_the_package_cache_and_every_suite(paths, tmp_path):
    inputs = plan_of("minimal", paths).stages[0].inputs
    h = host(tmp_path)
    argv = bootstrap_argv(inputs, h, tmp_path / "tree")
    assert argv[:2] == ["mmdebstrap", "--mode=root"]
    assert "--variant=minbase" in argv and "--architectures=amd64" in argv
    assert f'--setup-hook=mount -o bind {h.apt_archives} "$1"/var/cache/apt/archives' in argv
    assert '--customize-hook=umount "$1"/var/cache/apt/archives' in argv      # before mmdebstrap cleans up
    i = argv.index("--")  # options end before the suite: a suite can never be an option
    assert argv[i + 1:] == ["trixie", str(tmp_path / "tree"), f"deb {MIRROR} trixie main",
                            f"deb {MIRROR} trixie-updates main", f"deb {SECURITY} trixie-security main"]


def test_security_and_updates_can_be_switched_off(paths, tmp_path):
    write(paths.recipes, "bare", "extends: minimal\ndistribution: {security: false, updates: false}\n")
    inputs = plan_of("bare", paths, security=False, updates=False).stages[0].inputs
    assert apt_lines(inputs, host(tmp_path)) == [f"deb {MIRROR} trixie main"]


def test_the_proxy_reaches_apt_and_neither_the_image_nor_the_key(paths, tmp_path):
    from distonet.stages.bootstrap import proxy_env
    from distonet.stages.packages import apt_install_argv
    inputs = plan_of("minimal", paths).stages[0].inputs
    h = host(tmp_path, proxy="http://127.0.0.1:3142")
    argv = bootstrap_argv(inputs, h, tmp_path / "t")
    assert not any("Proxy" in a for a in argv)  # an --aptopt would land in the image's apt.conf.d
    assert proxy_env(h) == {"http_proxy": "http://127.0.0.1:3142", "https_proxy": "http://127.0.0.1:3142"}
    assert apt_install_argv(["tree"], h.proxy)[-5:] == ["-o", "Acquire::http::Proxy=http://127.0.0.1:3142",
                                                         "install", "--", "tree"]
    assert plan_of("minimal", paths, proxy="http://127.0.0.1:3142").stages[0].key == plan_of("minimal", paths).stages[0].key


def test_debootstrap_argv(paths, tmp_path):
    write(paths.recipes, "d", "extends: minimal\ndistribution: {bootstrap: debootstrap, suite: bookworm}\n")
    h = host(tmp_path)
    argv = bootstrap_argv(plan_of("d", paths).stages[0].inputs, h, tmp_path / "t")
    assert argv[0] == "debootstrap" and f"--cache-dir={h.apt_archives}" in argv
    assert argv[-3:] == ["bookworm", str(tmp_path / "t"), MIRROR]


def make_ctx(paths, tmp_path, runner):
    from distonet.stages.base import StageContext

    class FakeLedger:
        def mounts_under(self, path):
            self.under = path
    plan = plan_of("minimal", paths)
    partial = tmp_path / "partial"
    partial.mkdir()
    return StageContext("bootstrap", plan.stages[0].key, plan.stages[0].inputs, (), partial, host(tmp_path),
                        None, FakeLedger(), runner)


def test_first_bootstrap_saves_the_lists_then_reuses_them(paths, tmp_path):
    runner = RecordingRunner()
    ctx = make_ctx(paths, tmp_path, runner)
    Bootstrap.make(ctx)
    lists = lists_cache(ctx.inputs, ctx.host)
    assert "--skip=update" not in runner.calls[0]
    assert any(a.startswith("--customize-hook=sync-out /var/lib/apt/lists") for a in runner.calls[0])
    assert lists.is_dir()  # the saved lists moved into place
    (lists / "x_Packages").write_text("")
    Bootstrap.make(ctx)
    assert "--skip=update" in runner.calls[1]
    assert f"--setup-hook=sync-in {lists} /var/lib/apt/lists/" in runner.calls[1]


def test_a_failed_bootstrap_keeps_no_half_saved_lists(paths, tmp_path):
    import pytest
    from distonet.errors import CommandError
    ctx = make_ctx(paths, tmp_path, RecordingRunner(fail="mmdebstrap"))
    with pytest.raises(CommandError):
        Bootstrap.make(ctx)
    assert not list((tmp_path / "cache/apt-lists").glob("*"))
