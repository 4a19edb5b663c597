#!/usr/bin/env bash
# make mutation: mutmut over the core modules with the unit tests.
# mutmut names a mutant by its file's path, and the core's modules import
# each other by bare name (as on a minion, where extmods/utils is on
# sys.path), so the run happens in .mutation/ with the core at its top level.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
stage=$repo/.mutation
# The helpers run as scripts with ufw's or firewalld's Python are mutated too:
# their unit tests drive them with fake ufw and firewall packages.
core=(zimbra_fw_catalogue zimbra_fw_config zimbra_fw_policy zimbra_fw_audit zimbra_fw_ufw zimbra_fw_ufw_files
    zimbra_fw_ufw_batch zimbra_fw_firewalld zimbra_fw_firewalld_files zimbra_fw_firewalld_read zimbra_fw_firewalld_client
    zimbra_fw_dbus zimbra_fw_commands zimbra_fw_backend)
rm -rf "$stage"
mkdir -p "$stage"
# Every other module in _utils/ is copied beside them, unmutated: the core imports some.
others=()
for path in _utils/zimbra_fw_*.py; do
    module=$(basename "$path" .py)
    [[ " ${core[*]} " == *" $module "* ]] || others+=("$module")
done
cp _utils/zimbra_fw_*.py "$stage/"
cp -r tests harness tools _modules _states _beacons _runners docs pillar.example "$stage/"
{
    printf '[tool:pytest]\ntestpaths = tests\naddopts = -p no:cacheprovider\n'
    printf 'markers =\n    sandbox: real ufw in network namespaces (not run here)\n\n'
    printf '[mutmut]\nsource_paths =\n'
    for module in "${core[@]}"; do printf '    %s.py\n' "$module"; done
    printf 'also_copy =\n    harness/\n    tools/\n    _modules/\n    _states/\n    _beacons/\n    _runners/\n    docs/\n    pillar.example\n'
    for module in "${others[@]}"; do printf '    %s.py\n' "$module"; done
    # The property-based tests run ~1,200 pillars (and the hostile ones ask
    # firewalld's and ufw's parsers in a process of their own): too slow to
    # repeat per mutant.
    printf 'pytest_add_cli_args =\n    -m\n    not sandbox\n    --ignore=tests/unit/test_config_properties.py\n'
    printf '    --ignore=tests/unit/test_hostile_inputs.py\n'
} > "$stage/setup.cfg"
cd "$stage"
"$repo/.venv/bin/mutmut" run "$@" > mutmut-run.log 2>&1 || { tail -20 mutmut-run.log; exit 1; }
"$repo/.venv/bin/mutmut" results > results.txt 2>/dev/null || true
"$repo/.venv/bin/mutmut" export-cicd-stats > /dev/null 2>&1
"$repo/.venv/bin/python" "$repo/tools/mutation_score.py" results.txt mutants/mutmut-cicd-stats.json "$repo/docs/mutation-equivalent.md"
