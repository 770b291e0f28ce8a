#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): placing files and directories under the prefix.

# ---------------------------------------------------------------- files

ensure_dir() {  # ensure_dir REL TYPE MODE [parent]
    local rel=$1 type=$2 mode=$3 as_parent=${4:-} dir=$prefix/$1 parent=${1%/*}
    # Parents first, so that a parent made by an earlier install stays on the list.
    [ "$parent" = "$rel" ] || ensure_dir "$parent" dir 0750 parent
    no_link "$dir"
    if [ -n "${planned_dirs[$rel]:-}" ]; then  # made (or, in a dry run, listed) earlier in this run
        [ "$dry" = 1 ] || [ -n "$as_parent" ] || perm "$mode" "$dir"
        return 0
    fi
    if [ -d "$dir" ]; then
        # Ours from an earlier install: keep it on the list, and its mode right when it is
        # named itself (as a parent its mode is the one its own call sets: 2770 stays 2770).
        if [ -n "${old_type[$rel]:-}" ]; then
            record "${old_type[$rel]}" - "$rel"
            [ "$dry" = 1 ] || [ -n "$as_parent" ] || perm "$mode" "$dir"
        fi
        return 0
    fi
    [ ! -e "$dir" ] || die "$dir exists and is not a directory; move it away and re-run."
    if [ "$dry" = 0 ]; then
        tx_mkdir "$dir"
        perm "$mode" "$dir"
    fi
    say "$(v create) $dir"
    record "$type" - "$rel"
    planned_dirs[$rel]=1
}

changed_kept=()
declare -A planned_dirs=()

# place_file SRC REL MODE WHAT POLICY: POLICY "protect" never overwrites a file that
# differs from what the previous install wrote (the new one goes beside it as .dist);
# "replace" is for generated files nobody should edit (the launcher).
place_file() {
    local src=$1 rel=$2 mode=$3 what=$4 policy=$5
    local dst=$prefix/$2 new cur rec=
    new=$(sha "$src")
    [ "${old_type[$rel]:-}" != file ] || rec=${old_sha[$rel]}
    if [ -e "$dst" ] || [ -L "$dst" ]; then
        if [ ! -f "$dst" ] || [ -L "$dst" ]; then
            die "$dst exists and is not a regular file; move it away and re-run."
        fi
        cur=$(sha "$dst")
        if [ "$cur" = "$new" ]; then
            # Identical: ours stays on the list; an admin's own identical copy stays theirs.
            if [ -n "$rec" ]; then
                record file "$new" "$rel"
                [ "$dry" = 1 ] || perm "$mode" "$dst"
            fi
            say "$what $dst is up to date"
            return 0
        fi
        if [ "$policy" = replace ] || { [ -n "$rec" ] && [ "$cur" = "$rec" ]; }; then
            write_file "$src" "$dst" "$mode"
            record file "$new" "$rel"
            say "$(v update) $what $dst"
            return 0
        fi
        # Changed by the admin (or never ours): keep it, put the new version beside it.
        [ -z "$rec" ] || record file "$rec" "$rel"
        write_file "$src" "$dst.dist" "$mode"
        record dist "$new" "$rel.dist"
        changed_kept+=("$dst")
        say "$(v keep) $dst because it was changed; the new version is $dst.dist (compare and merge by hand)"
        return 0
    fi
    write_file "$src" "$dst" "$mode"
    record file "$new" "$rel"
    say "$(v install) $what to $dst"
}

write_file() {  # write_file SRC DST MODE
    no_link "$2"
    [ "$dry" = 0 ] || return 0
    tx_file "$2"
    install -m "$3" -- "$1" "$2"
    perm "$3" "$2"
}

# Removes a file of ours that the admin did not change; says why it stays otherwise.
remove_if_unchanged() {  # REL SHA
    local f=$prefix/$1
    [ -e "$f" ] || return 0
    if [ "$(sha "$f")" != "$2" ]; then
        changed_kept+=("$f")
        say "$(v keep) $f because it was changed after install.sh wrote it"
        return 0
    fi
    if [ "$dry" = 0 ]; then
        tx_file "$f"
        rm -f -- "$f"
    fi
    say "$(v remove) $f"
}
