# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_astpatch_global_optspecs
    string join \n config= h/help V/version
end

function __fish_astpatch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_astpatch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_astpatch_using_subcommand
    set -l cmd (__fish_astpatch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c astpatch -n "__fish_astpatch_needs_command" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_needs_command" -s V -l version -d 'Print version'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "detect" -d 'Tell which Asterisk a source tree is and what its chan_sip.c holds'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "apply" -d 'Patch chan_sip.c so every inbound failed-auth line ends with the real source address'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "revert" -d 'Undo `astpatch apply`: restore the original chan_sip.c byte for byte'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "scan" -d 'Count failed logins in Asterisk logs: per rule, per address, and whom the watcher would ban'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "verify" -d 'Prove the whole chain works: patched source, built and installed module, logging, watcher, firewall'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "show-config" -d 'Print the effective watcher settings (defaults merged with the settings file)'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "watch" -d 'Follow Asterisk\'s logs and ban addresses that fail too often (like fail2ban)'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "import-fail2ban" -d 'Turn a fail2ban jail (jail.local\'s [asterisk] and [DEFAULT]) into astpatch settings'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "install-watcher" -d 'Install the watcher as a hardened systemd service, enabled and started'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "ban" -d 'Ban an address or network now, through the firewall, recorded durably'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "unban" -d 'Lift a ban (or every ban with --all), from the state store and the firewall'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "status" -d 'Show the watcher, failure counters and current bans (like fail2ban-client status)'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "generate" -d 'Write the files a package installs: man pages, completions, the commented default settings file and the systemd unit (for packagers; `packaging/` holds them)'
complete -c astpatch -n "__fish_astpatch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c astpatch -n "__fish_astpatch_using_subcommand detect" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand detect" -l json -d 'Print a JSON report instead of text'
complete -c astpatch -n "__fish_astpatch_using_subcommand detect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l moddir -d 'Module directory [default: astmoddir from asterisk.conf, else the tree\'s makeopts]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l asterisk-conf -d 'The asterisk.conf of the Asterisk to install into and reload (the `-C` it runs with); needed when several run [default: the running one, else /etc/asterisk/asterisk.conf]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l root -d 'Root of the system Asterisk runs on: asterisk.conf, module and run directories are read inside it' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -s j -l jobs -d 'Parallel make jobs [default: number of CPUs]' -r
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l dry-run -d 'Print the unified diff (applies with `patch -p1`) and write nothing'
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l json -d 'Print a JSON report instead of text'
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l rebuild -d 'Rebuild chan_sip after patching: in a built tree only chan_sip is compiled (`make channels`); an unconfigured tree gets ./configure and a full make. make\'s output goes to SRC/astpatch-build.log'
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l install -d 'Copy the built chan_sip.so into the directory Asterisk loads modules from, atomically; the module it replaces is kept as chan_sip.so.astpatch-bak for `revert --install`'
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -l reload -d 'After installing, unload and load chan_sip in the running Asterisk, so the new code is live without a restart; then confirm in /proc that it maps the installed file. Exits non-zero when nothing was reloaded (no Asterisk running)'
complete -c astpatch -n "__fish_astpatch_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l moddir -d 'Module directory [default: astmoddir from asterisk.conf, else the tree\'s makeopts]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l asterisk-conf -d 'The asterisk.conf of the Asterisk to restore and reload (the `-C` it runs with); needed when several run [default: the running one, else /etc/asterisk/asterisk.conf]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l root -d 'Root of the system Asterisk runs on' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l json -d 'Print a JSON report instead of text'
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l install -d 'Also put back the chan_sip.so that `apply --install` replaced (chan_sip.so.astpatch-bak)'
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -l reload -d 'After putting the module back, unload and load chan_sip in the running Asterisk and confirm in /proc that it maps the restored file (as `apply --reload`)'
complete -c astpatch -n "__fish_astpatch_using_subcommand revert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand scan" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand scan" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand scan" -l json -d 'Print a JSON report instead of text'
complete -c astpatch -n "__fish_astpatch_using_subcommand scan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l root -d 'Root of the system Asterisk and the watcher run on' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l moddir -d 'Module directory [default: the running Asterisk\'s, else astmoddir from asterisk.conf, else the tree\'s makeopts]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l asterisk-conf -d 'The asterisk.conf of the Asterisk to check (the `-C` it runs with); needed when several run [default: asterisk_conf from the settings, else the running one]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -l json -d 'Print JSON instead of text'
complete -c astpatch -n "__fish_astpatch_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand show-config" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand show-config" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand show-config" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand show-config" -l json -d 'Print JSON instead of TOML'
complete -c astpatch -n "__fish_astpatch_using_subcommand show-config" -s h -l help -d 'Print help'
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -l log -d 'A log to follow (repeatable) [default: logs from the settings]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -l ban -d 'Ban through the firewall (without it, only report)'
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -l from-start -d 'Read the logs from their beginning, each failure at its own time (default: only lines written from now on). A log with a position saved by an earlier --ban run resumes there instead'
complete -c astpatch -n "__fish_astpatch_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand import-fail2ban" -l jail -d 'Jail section to import' -r
complete -c astpatch -n "__fish_astpatch_using_subcommand import-fail2ban" -l output -d 'Write the settings here instead of printing them' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand import-fail2ban" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand import-fail2ban" -l force -d 'Replace --output if it exists'
complete -c astpatch -n "__fish_astpatch_using_subcommand import-fail2ban" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand install-watcher" -l unit-dir -d 'Where the unit goes' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand install-watcher" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand install-watcher" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand install-watcher" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand install-watcher" -l dry-run -d 'Print the unit and the commands; change nothing'
complete -c astpatch -n "__fish_astpatch_using_subcommand install-watcher" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand ban" -l for -d 'How long [default: bantime from the settings, grown by bantime_increment]' -r
complete -c astpatch -n "__fish_astpatch_using_subcommand ban" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand ban" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand ban" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand ban" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand unban" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand unban" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand unban" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand unban" -l all -d 'Lift every ban astpatch holds'
complete -c astpatch -n "__fish_astpatch_using_subcommand unban" -l purge -d 'With --all: also remove astpatch\'s firewall objects of every backend'
complete -c astpatch -n "__fish_astpatch_using_subcommand unban" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand status" -l state-dir -d 'Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand status" -l backend -d 'Firewall backend [default: the running watcher\'s, else backend from the settings, iptables]' -r -f -a "iptables\t''
ipset\t''
nftables\t''"
complete -c astpatch -n "__fish_astpatch_using_subcommand status" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand status" -l json -d 'Print JSON instead of text'
complete -c astpatch -n "__fish_astpatch_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand completions" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c astpatch -n "__fish_astpatch_using_subcommand generate" -l config -d 'Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in defaults when that does not exist]' -r -F
complete -c astpatch -n "__fish_astpatch_using_subcommand generate" -s h -l help -d 'Print help'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "detect" -d 'Tell which Asterisk a source tree is and what its chan_sip.c holds'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "apply" -d 'Patch chan_sip.c so every inbound failed-auth line ends with the real source address'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "revert" -d 'Undo `astpatch apply`: restore the original chan_sip.c byte for byte'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "scan" -d 'Count failed logins in Asterisk logs: per rule, per address, and whom the watcher would ban'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "verify" -d 'Prove the whole chain works: patched source, built and installed module, logging, watcher, firewall'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "show-config" -d 'Print the effective watcher settings (defaults merged with the settings file)'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "watch" -d 'Follow Asterisk\'s logs and ban addresses that fail too often (like fail2ban)'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "import-fail2ban" -d 'Turn a fail2ban jail (jail.local\'s [asterisk] and [DEFAULT]) into astpatch settings'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "install-watcher" -d 'Install the watcher as a hardened systemd service, enabled and started'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "ban" -d 'Ban an address or network now, through the firewall, recorded durably'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "unban" -d 'Lift a ban (or every ban with --all), from the state store and the firewall'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "status" -d 'Show the watcher, failure counters and current bans (like fail2ban-client status)'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "completions" -d 'Print the shell completion script for bash, zsh, fish, elvish or powershell'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "generate" -d 'Write the files a package installs: man pages, completions, the commented default settings file and the systemd unit (for packagers; `packaging/` holds them)'
complete -c astpatch -n "__fish_astpatch_using_subcommand help; and not __fish_seen_subcommand_from detect apply revert scan verify show-config watch import-fail2ban install-watcher ban unban status completions generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
