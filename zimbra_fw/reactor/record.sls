# -*- coding: utf-8 -*-
# vim: ft=sls
---
# Reactor: only record the drift, as one WARNING line in the master's log
# ("zimbra_fw drift on ID: what differs"), for the admin's log alerting.
# Master config (see docs/drift.md):
#   reactor:
#     - 'salt/beacon/*/zimbra_fw/drift':
#         - salt://zimbra_fw/reactor/record.sls
# The event's data comes from the minion: one line, at most 1,000
# characters, quoted as JSON.
# {%- set said = (data['id'] | string) ~ ': ' ~ (data.get('comment', '') | string) %}
# {%- set line = ('zimbra_fw drift on ' ~ said.splitlines() | join(' '))[:1000] | json %}
zimbra_fw-record-drift:
  runner.salt.cmd:
    - args:
        - fun: log.warning
        - message: {{ line }}
