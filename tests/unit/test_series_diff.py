"""What a series touches: files and the functions its changed lines are in (harness.drivers.series.diff)."""

from hypothesis import given
from hypothesis import strategies as st

from harness.drivers.series.diff import MAX_WORDS, function_of, safe_path, touched_text

SHIPPED = "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"


def test_the_shipped_patch_touches_sb_init_dio_done_wq(fixtures):
    text = (fixtures.parent.parent / SHIPPED).read_text()
    t = touched_text(text)
    assert t.files == ("fs/direct-io.c",)
    # the hunk header names dio_bio_reap (the line before the hunk); the change is in the function
    # that starts inside the hunk
    assert t.functions_of("fs/direct-io.c") == ("sb_init_dio_done_wq",)


def test_hunk_header_function_several_files_and_new_files():
    text = """diff --git a/fs/ocfs2/file.c b/fs/ocfs2/file.c
--- a/fs/ocfs2/file.c
+++ b/fs/ocfs2/file.c
@@ -10,3 +10,3 @@ static ssize_t ocfs2_file_write_iter(struct kiocb *iocb,
 \tint ret;
-\tret = 1;
+\tret = 2;
diff --git a/fs/xfs/new.c b/fs/xfs/new.c
new file mode 100644
--- /dev/null
+++ b/fs/xfs/new.c
@@ -0,0 +1,2 @@
+int xfs_new(void)
+{
"""
    t = touched_text(text)
    assert t.files == ("fs/ocfs2/file.c", "fs/xfs/new.c")
    assert t.functions_of("fs/ocfs2/file.c") == ("ocfs2_file_write_iter",)
    assert t.functions_of("fs/xfs/new.c") == ("xfs_new",)
    assert t.all_functions == ("ocfs2_file_write_iter", "xfs_new")


def test_paths_leaving_the_tree_are_dropped():
    text = "diff --git a/../../etc/passwd b/../../etc/passwd\n--- a/x\n+++ b//etc/shadow\n@@ -1 +1 @@ f(\n-a\n+b\n"
    assert touched_text(text).files == ()
    assert safe_path("fs/ext4/inode.c") == "fs/ext4/inode.c"
    assert safe_path("fs/../x") is None and safe_path("/abs") is None and safe_path("") is None


def test_function_of_context_lines():
    assert function_of("static int foo(struct x *y)") == "foo"
    assert function_of("struct foo {") is None
    assert function_of("if (x)") is None


@given(st.text(max_size=400))
def test_any_text_parses_and_files_stay_relative(text):
    t = touched_text(text)
    for f in t.files:
        assert not f.startswith("/") and ".." not in f.split("/")
    assert set(dict(t.functions)) <= set(t.files) and set(dict(t.words)) <= set(t.files)


def test_the_words_of_changed_lines_are_kept_per_file_lowercased_and_bounded():
    text = ("diff --git a/fs/a.c b/fs/a.c\n--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@ int f(void)\n"
            " unchanged_context_word;\n-\tif (x & IOCB_SYNC) return sizeof(y);\n+\t/* FUA is gone */\n")
    t = touched_text(text)
    assert t.words_of("fs/a.c") == ("x", "iocb_sync", "y", "fua", "is", "gone")    # no C keyword, no context
    many = text + "".join(f"+w{i};\n" for i in range(2 * MAX_WORDS))
    assert len(touched_text(many).words_of("fs/a.c")) == MAX_WORDS
    assert touched_text(text).words_of("fs/other.c") == ()
