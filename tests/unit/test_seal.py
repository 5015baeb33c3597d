from tests.recording import RecordingRunner
from distonet.stages.seal import seal_tree


def make_tree(root):
    for d in ["etc/ssh", "etc/apt/apt.conf.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
              "var/log/apt", "usr/sbin", "tmp", "var/lib/dbus", "usr/lib/systemd/system"]:
        (root / d).mkdir(parents=True)
    files = {"etc/ssh/ssh_host_ed25519_key": "k", "etc/ssh/sshd_config": "cfg",
             "etc/apt/apt.conf.d/01proxy": 'Acquire::http::Proxy "x";', "etc/apt/apt.conf.d/70debconf": "keep",
             "var/lib/apt/lists/deb.example_dists_trixie_InRelease": "r", "var/lib/apt/lists/lock": "",
             "var/cache/apt/pkgcache.bin": "b", "var/cache/apt/archives/a.deb": "d", "var/log/apt/history.log": "h",
             "var/log/dpkg.log": "l", "etc/resolv.conf": "nameserver 192.0.2.1", "etc/machine-id": "abc\n",
             "var/lib/dbus/machine-id": "abc", "etc/hostname": "buildhost", "usr/sbin/sshd": "", "tmp/x": "",
             "usr/lib/systemd/system/systemd-networkd.service": "[Install]\nWantedBy=multi-user.target\n"}
    for path, text in files.items():
        (root / path).write_text(text)


INPUTS = {"hostname": "node", "root_uuid": "u-1", "access": {"root_password_hash": None, "ssh_keys": []},
          "network": {"dhcp": True}}


def test_seal_removes_host_state_and_sets_identity(tmp_path):
    make_tree(tmp_path)
    runner = RecordingRunner()
    seal_tree(tmp_path, INPUTS, runner)
    gone = ["etc/ssh/ssh_host_ed25519_key", "etc/apt/apt.conf.d/01proxy", "var/lib/apt/lists/deb.example_dists_trixie_InRelease",
            "var/cache/apt/pkgcache.bin", "var/cache/apt/archives/a.deb", "var/log/apt/history.log", "var/log/dpkg.log",
            "etc/resolv.conf", "var/lib/dbus/machine-id", "tmp/x"]
    assert [p for p in gone if (tmp_path / p).exists()] == []
    for kept in ["etc/ssh/sshd_config", "etc/apt/apt.conf.d/70debconf", "var/lib/apt/lists/lock"]:
        assert (tmp_path / kept).exists()
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert (tmp_path / "etc/hostname").read_text() == "node\n"
    assert "UUID=u-1 / ext4" in (tmp_path / "etc/fstab").read_text()
    assert "ssh-keygen -A" in (tmp_path / "etc/systemd/system/ssh.service.d/distonet-hostkeys.conf").read_text()
    assert "DHCP=yes" in (tmp_path / "etc/systemd/network/80-distonet-dhcp.network").read_text()
    assert runner.calls == [("chroot", str(tmp_path), "systemctl", "enable", "systemd-networkd.service"),
                            ("chpasswd", "--root", str(tmp_path), "--encrypted")]
    assert runner.inputs[-1] == "root:*\n"  # locked
    assert (tmp_path / "etc/hosts").read_text().splitlines()[1] == "127.0.1.1\tnode"


def test_seal_opens_root_with_a_hash_or_keys(tmp_path):
    make_tree(tmp_path)
    runner = RecordingRunner()
    access = {"root_password_hash": "$6$salt$hash", "ssh_keys": ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two\n"]}
    seal_tree(tmp_path, {**INPUTS, "access": access, "network": {"dhcp": False}}, runner)
    # The hash goes on stdin: never on a command line that `ps` shows.
    assert runner.calls == [("chpasswd", "--root", str(tmp_path), "--encrypted")]
    assert runner.inputs == ["root:$6$salt$hash\n"]
    assert not any("$6$" in a for call in runner.calls for a in call)
    assert not (tmp_path / "etc/systemd/network/80-distonet-dhcp.network").exists()
    keys = tmp_path / "root/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n"
    assert oct(keys.stat().st_mode & 0o777) == "0o600"


def test_hostname_null_leaves_the_name_to_dhcp(tmp_path):
    make_tree(tmp_path)
    seal_tree(tmp_path, {**INPUTS, "hostname": None}, RecordingRunner())
    assert not (tmp_path / "etc/hostname").exists()
    hosts = (tmp_path / "etc/hosts").read_text()
    assert "127.0.1.1" not in hosts and "localhost" in hosts


def test_stamp_inputs_never_hold_the_hash():
    from distonet.secrets import redact
    data = redact({"hostname": "n", "access": {"root_password_hash": "$6$x$y", "ssh_keys": []}})
    assert data["access"]["root_password_hash"] == "<redacted>"
    assert redact({"access": {"root_password_hash": None}})["access"]["root_password_hash"] is None


def test_dns_through_resolved_when_the_image_has_it(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "usr/lib/systemd/system/systemd-resolved.service").write_text("[Install]\n")
    runner = RecordingRunner()
    seal_tree(tmp_path, INPUTS, runner)
    assert runner.calls[0] == ("chroot", str(tmp_path), "systemctl", "enable", "systemd-networkd.service",
                               "systemd-resolved.service")
    resolv = tmp_path / "etc/resolv.conf"
    assert resolv.is_symlink() and str(resolv.readlink()) == "../run/systemd/resolve/stub-resolv.conf"


def test_the_host_resolver_lent_to_a_chroot_is_taken_back(tmp_path):
    from distonet.host.chroot import _lend_resolv_conf
    resolv = tmp_path / "etc/resolv.conf"
    restore = _lend_resolv_conf(resolv)
    assert resolv.read_bytes() == open("/etc/resolv.conf", "rb").read()
    restore()
    assert not resolv.exists()  # there was none before
    restore = _lend_resolv_conf(resolv)
    resolv.unlink()
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")  # a package made its own
    restore()
    assert resolv.is_symlink()


def test_chroot_commands_run_in_their_own_pid_namespace(tmp_path):
    from distonet.host.chroot import chroot_argv
    argv = chroot_argv(tmp_path, ["apt-get", "install", "--", "tree"])
    assert argv[:5] == ["unshare", "--pid", "--fork", "--kill-child", f"--mount-proc={tmp_path}/proc"]
    assert argv[5:7] == ["chroot", str(tmp_path)] and argv[-4:] == ["apt-get", "install", "--", "tree"]
    assert "env" in argv[7] and argv[8] == "-i"  # nothing of the caller's environment leaks in


def test_a_resolver_symlink_from_an_earlier_layer_gets_the_host_resolvers_on_run(tmp_path):
    from distonet.host.chroot import _lend_resolv_conf
    (tmp_path / "etc").mkdir()
    (tmp_path / "run").mkdir()
    resolv = tmp_path / "etc/resolv.conf"
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    _lend_resolv_conf(resolv)()
    assert resolv.is_symlink()  # the tree is unchanged
    assert (tmp_path / "run/systemd/resolve/stub-resolv.conf").read_bytes() == open("/etc/resolv.conf", "rb").read()
