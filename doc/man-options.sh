#!/bin/sh
# The man page's option sections come from the option tables (src/conf_opts.c) through
# `entropyd --help-man`; this splices them into doc/entropyd.8 between the marker lines
# `.\" BEGIN GENERATED OPTIONS` and `.\" END GENERATED OPTIONS`, or checks that they match.
#
#   man-options.sh update ENTROPYD MANPAGE    rewrite the block (make man)
#   man-options.sh check ENTROPYD MANPAGE     exit 1 with a diff if the block differs
#   man-options.sh selftest ENTROPYD MANPAGE  check passes on MANPAGE, and fails on copies
#                                             edited by hand inside the block
set -eu

BEGIN='.\" BEGIN GENERATED OPTIONS'
END='.\" END GENERATED OPTIONS'

usage() {
	echo "usage: $0 update|check|selftest ENTROPYD MANPAGE" >&2
	exit 2
}
[ $# -eq 3 ] || usage
cmd=$1 entropyd=$2 page=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The lines between the markers of $1 on stdout; fails unless each marker is there once.
block() {
	n=$(grep -cxF -e "$BEGIN" -e "$END" "$1" || true)
	if [ "$n" != 2 ]; then
		echo "$1: needs one '$BEGIN' line and one '$END' line" >&2
		return 1
	fi
	# Through the environment: awk -v would read the backslash as an escape.
	B=$BEGIN E=$END awk '$0 == ENVIRON["E"] { on = 0 } on { print } $0 == ENVIRON["B"] { on = 1 }' "$1"
}

check() {
	"$entropyd" --help-man >"$tmp/want"
	block "$1" >"$tmp/have" || return 1
	if ! diff -u "$tmp/want" "$tmp/have" >"$tmp/diff"; then
		echo "$1: the generated option sections differ from entropyd --help-man" >&2
		echo "(edit src/conf_opts.c, then run make man; do not edit the block by hand):" >&2
		cat "$tmp/diff" >&2
		return 1
	fi
}

case $cmd in
update)
	"$entropyd" --help-man >"$tmp/want"
	block "$page" >/dev/null
	B=$BEGIN E=$END F=$tmp/want awk '
		$0 == ENVIRON["E"] { on = 0 }
		!on { print }
		$0 == ENVIRON["B"] { while ((getline l < ENVIRON["F"]) > 0) print l; on = 1 }' \
		"$page" >"$tmp/page"
	cat "$tmp/page" >"$page"
	;;
check)
	check "$page"
	;;
selftest)
	check "$page"
	# One word changed, a line added, a line removed, a marker lost: each must fail.
	n=$(grep -nxF -e "$BEGIN" "$page" | cut -d: -f1)
	sed "$((n + 5))s/\$/ edited/" "$page" >"$tmp/edited.8"
	sed "$((n + 5))a\\
an added line" "$page" >"$tmp/added.8"
	sed "$((n + 5))d" "$page" >"$tmp/removed.8"
	grep -vxF -e "$END" "$page" >"$tmp/nomarker.8"
	for f in edited added removed nomarker; do
		if check "$tmp/$f.8" 2>/dev/null; then
			echo "selftest: a copy with a $f line passed the check" >&2
			exit 1
		fi
	done
	echo "selftest: the check passes on $page and fails on 4 hand-edited copies"
	;;
*)
	usage
	;;
esac
