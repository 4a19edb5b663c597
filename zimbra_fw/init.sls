# -*- coding: utf-8 -*-
# vim: ft=sls
---
# Least-privilege ufw firewall for a Zimbra server, from the zimbra_fw pillar.
# Needs the custom modules on the minion: salt '*' saltutil.sync_all

zimbra_fw-ufw-installed:
  pkg.installed:
    - name: ufw

zimbra_fw-profile:
  zimbra_fw.profile_managed:
    - require:
      - pkg: zimbra_fw-ufw-installed

# Management access (ssh) comes first, so default-deny never locks it out.
zimbra_fw-rules:
  zimbra_fw.rules_managed:
    - require:
      - zimbra_fw: zimbra_fw-profile

zimbra_fw-firewall:
  zimbra_fw.firewall_enabled:
    - require:
      - zimbra_fw: zimbra_fw-rules
