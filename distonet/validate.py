"""Value grammars for recipes, each a pydantic-annotated type: what is not plausible is refused
at `check` time with the file and the key, before anything runs as root with it."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

# Debian policy 5.6.1: lower case, digits, + - . ; at least two characters, alphanumeric first.
# Optionally :arch, and =version or /release as apt-get install accepts them.
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+|/[a-z0-9.-]+)?$")
LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SUITE_RE = re.compile(r"^[a-z][a-z0-9.-]{1,40}$")
CONSOLE_RE = re.compile(r"^(tty[A-Za-z]*[0-9]+|hvc[0-9]+|ttyAMA[0-9]+)(,[0-9]{3,7}([noe][5-8])?)?$")
# One kernel argument: no whitespace, quotes, braces, semicolons or backslashes (grub.cfg syntax).
CMDLINE_ARG_RE = re.compile(r"^[^\s'\"{};\\$`#]+$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) AAAA[A-Za-z0-9+/]+={0,3}( [^\n\r]*)?$")
_B64 = r"[./A-Za-z0-9]"
CRYPT_RE = re.compile(
    rf"^(\$(1|5|6)\$(rounds=[0-9]+\$)?{_B64}{{1,16}}\${_B64}{{22,86}}"     # md5, sha256, sha512
    rf"|\$(y|gy|7)\${_B64}+\${_B64}+\${_B64}{{43}}"                        # yescrypt, scrypt
    rf"|\$2[abxy]\$[0-9]{{2}}\${_B64}{{53}})$")                             # bcrypt
LOCKED_RE = re.compile(r"^[!*]+$")
URL_RE = re.compile(r"^(https?|file)://[^\s@/]*[^\s@]*$")


def _check(pattern: re.Pattern, what: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return check


def _hostname(value: str) -> str:
    if len(value) > 253 or not all(LABEL_RE.match(p) for p in value.split(".")):
        raise ValueError(f"{value!r} is not a hostname (RFC 1123: labels of letters, digits and "
                         "inner hyphens, 1–63 characters; null takes the name from DHCP)")
    return value


def _crypt(value: str) -> str:
    body = value[1:] if value.startswith("!") and len(value) > 1 and value[1] == "$" else value
    if LOCKED_RE.match(value) or CRYPT_RE.match(body):
        return value
    raise ValueError("not a crypt(3) hash: make one with `openssl passwd -6` (or use '!' to lock); "
                     "the value itself is not shown")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from None
    return value


def _url(value: str) -> str:
    if not URL_RE.match(value):
        if "@" in value:
            raise ValueError("a mirror URL must not carry a user or password (they would end up in the "
                             "image's sources.list); use apt's auth.conf on the build host")
        raise ValueError(f"{value!r} is not an http://, https:// or file:// URL")
    return value


def _text(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise ValueError("control characters (a newline?) are not allowed here")
    return value


PackageName = Annotated[str, AfterValidator(_check(PACKAGE_RE, "a Debian package name (lower case, "
                                                   "digits, + - .; it cannot start with '-')"))]
LayerName = Annotated[str, AfterValidator(_check(NAME_RE, "a layer name (a-z, 0-9, _ and -, "
                                                 "starting with a letter or digit)"))]
RecipeName = Annotated[str, AfterValidator(_check(NAME_RE, "a recipe name (a-z, 0-9, _ and -)"))]
Suite = Annotated[str, AfterValidator(_check(SUITE_RE, "a Debian suite or codename"))]
Hostname = Annotated[str, AfterValidator(_hostname)]
CryptHash = Annotated[str, AfterValidator(_crypt)]
Console = Annotated[str, AfterValidator(_check(CONSOLE_RE, "a console like ttyS0,115200, tty0 or hvc0"))]
CmdlineArg = Annotated[str, AfterValidator(_check(CMDLINE_ARG_RE, "one kernel argument (no spaces, "
                                                  "quotes, braces, ; $ ` # or backslashes)"))]
SshKey = Annotated[str, AfterValidator(_check(SSH_KEY_RE, "an OpenSSH public key (ssh-ed25519, "
                                              "ssh-rsa or ecdsa-sha2-*, then its base64, on one line)"))]
VarName = Annotated[str, AfterValidator(_check(re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
                                                "a template variable name (letters, digits, _)"))]
RepoSuite = Annotated[str, AfterValidator(_check(re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"),
                                                  "a suite or codename of the repository"))]
RepoComponent = Annotated[str, AfterValidator(_check(re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$"),
                                                     "a component name"))]
KeyFile = Annotated[str, AfterValidator(_check(re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.(asc|gpg)$"),
                                                "a key file name in keys/ ending in .asc or .gpg"))]
UserName = Annotated[str, AfterValidator(_check(re.compile(r"^[a-z_][a-z0-9_-]{0,31}$"),
                                                 "a user or group name (a-z, 0-9, _ and -, at most 32)"))]
Locale = Annotated[str, AfterValidator(_check(re.compile(r"^[A-Za-z]{1,8}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@[a-z]+)?$"),
                                               "a locale such as en_GB.UTF-8 or C.UTF-8"))]
TimeZone = Annotated[str, AfterValidator(_check(re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}$"),
                                                 "a time zone such as Europe/Paris or UTC"))]
Keyboard = Annotated[str, AfterValidator(_check(re.compile(r"^[a-z]{2,8}(,[a-z]{2,8})*$"),
                                                 "an XKB layout such as fr or us,de"))]
Shell = Annotated[str, AfterValidator(_check(re.compile(r"^/[a-z0-9/_-]+$"), "a shell path such as /bin/bash"))]
DebFile = Annotated[str, AfterValidator(_check(re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~_-]*\.deb$"),
                                                "a .deb file name in debs/"))]
PinPackages = Annotated[str, AfterValidator(_check(re.compile(r"^[a-z0-9*?+.\- ]+$"),
                                                    "package names or globs, space separated, or *"))]
PinWhat = Annotated[str, AfterValidator(_check(re.compile(r"^(release|origin|version) [^\n\r]{1,200}$"),
                                               "an apt pin: 'release a=trixie-backports', 'origin host' "
                                               "or 'version 1.2*'"))]
ElementName = Annotated[str, AfterValidator(_check(re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$"),
                                                    "a diskimage-builder element name"))]
DibVar = Annotated[str, AfterValidator(_check(re.compile(r"^DIB_[A-Z0-9_]{1,60}$"),
                                               "a diskimage-builder variable (DIB_...)"))]
DibValue = Annotated[str, Field(max_length=2000), AfterValidator(_check(re.compile(r"^[^\x00]*$"),
                                                                        "a value without NUL"))]
Regex = Annotated[str, Field(max_length=500), AfterValidator(_regex)]
Url = Annotated[str, Field(max_length=500), AfterValidator(_url)]
Text = Annotated[str, Field(max_length=2000), AfterValidator(_text)]
