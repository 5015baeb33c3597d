"""The only places with side effects on the build host: commands, mounts, namespaces, apt facts."""
