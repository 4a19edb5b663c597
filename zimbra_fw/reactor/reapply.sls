# -*- coding: utf-8 -*-
# vim: ft=sls
---
# Reactor: re-apply zimbra_fw on the minion whose firewall drifted.
# Master config (see docs/drift.md):
#   reactor:
#     - 'salt/beacon/*/zimbra_fw/drift':
#         - salt://zimbra_fw/reactor/reapply.sls
# The event's data comes from the minion: its id is quoted as JSON and
# targeted as a list of one literal name, so no id can name other minions
# (a glob, a comma) or add to this file.
# {%- set minion = data['id'] | string | json %}
zimbra_fw-reapply:
  local.state.apply:
    - tgt: [{{ minion }}]
    - tgt_type: list
    - args:
        - mods: zimbra_fw
