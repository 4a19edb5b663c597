# -*- coding: utf-8 -*-
# vim: ft=sls
---
# Least-privilege firewall for a Zimbra server, from the zimbra_fw pillar.
# Needs the custom modules on the minion: salt '*' saltutil.sync_all

# The whole pillar is checked first: a bad value stops the run here,
# before anything is installed or changed.
zimbra_fw-pillar:
  zimbra_fw.pillar_valid: []

# ufw, or firewalld (running): the pillar's backend, by default from os_family.
zimbra_fw-installed:
  zimbra_fw.firewall_installed:
    - require:
        - zimbra_fw: zimbra_fw-pillar

zimbra_fw-profile:
  zimbra_fw.profile_managed:
    - require:
        - zimbra_fw: zimbra_fw-installed

# Management access (ssh) comes first, so default-deny never locks it out.
zimbra_fw-rules:
  zimbra_fw.rules_managed:
    - require:
        - zimbra_fw: zimbra_fw-profile

zimbra_fw-firewall:
  zimbra_fw.firewall_enabled:
    - require:
        - zimbra_fw: zimbra_fw-rules
