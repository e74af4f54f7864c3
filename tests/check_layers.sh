#!/bin/sh
# The layering of DESIGN.md, checked on the sources: a folder includes headers only
# from the folders it may depend on (dependencies point down; server and bench sit side
# by side on top, and only the binary's entry point, server/cli/, knows both). Exit 0 when every include
# is allowed, 1 with the offending lines otherwise.
src=${1:?usage: check_layers.sh SOURCE_DIR}
status=0
check() { # folder, allowed folders
    dir=$1
    shift
    allowed="$dir $*"
    [ -d "$src/$dir" ] || return 0
    # server/cli/ is the binary's entry point, checked as its own layer ("server/cli").
    prune=""
    [ "$dir" = server ] && prune="-path $src/server/cli -prune -o"
    for f in $(find "$src/$dir" $prune -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print); do
        grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/' "$f" | while IFS= read -r line; do
            to=$(printf '%s\n' "$line" | sed -E 's/^[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]+"([a-z_]+)\/.*/\1/')
            case " $allowed " in
            *" $to "*) ;;
            *) echo "layering: ${f#$src/}:$line: $dir may not include $to/ (allowed: $allowed)"; echo x ;;
            esac
        done
    done
}
# The link lines say the same: ms_<folder> links only ms_<allowed folder>[_suffix].
check_links() { # folder, allowed folders
    dir=$1
    shift
    allowed="$dir $*"
    [ -f "$src/$dir/CMakeLists.txt" ] || return 0
    for lib in $(grep -E 'target_link_libraries\(ms_[a-z_]+' "$src/$dir/CMakeLists.txt" |
                 sed -E 's/^[^(]*\([^ ]+//' | grep -oE '(^|[[:space:]])ms_[a-z]+' | sed 's/^[[:space:]]*ms_//'); do
        case " $allowed " in
        *" $lib "*) ;;
        *) echo "layering: $dir/CMakeLists.txt links ms_$lib: $dir may not depend on $lib/"; echo x ;;
        esac
    done
}
out=$(
    check_links kernels
    check_links llm kernels
    check_links encoder llm kernels
    check_links scheduler encoder llm kernels
    check_links bench scheduler encoder llm kernels
    check_links server scheduler encoder llm kernels
        check kernels
    check llm kernels
    check encoder llm kernels
    check scheduler encoder llm kernels
    check bench scheduler encoder llm kernels
    check server scheduler encoder llm kernels
    check server/cli server bench scheduler encoder llm kernels
)
if printf '%s\n' "$out" | grep -q '^x$'; then
    printf '%s\n' "$out" | grep -v '^x$'
    status=1
fi
[ $status -eq 0 ] && echo "layering: kernels < llm < encoder < scheduler < {bench, server} < server/cli (the binary): every include allowed"
exit $status
