/*
 * A QEMU TCG plugin: count the guest instructions executed (per vCPU, by a callback on every
 * translated block executed, adding the block's instruction count) and publish the total to the
 * file named by out=PATH every 20 ms and at exit (written to PATH.tmp, then renamed), so the host
 * can read the count before and after a guest workload. Built by benchmarks/instructions.py
 * against the plugin API header of the QEMU source matching Debian's package (API version 1,
 * QEMU 7.2); see docs/vms.md, "Guest instruction counts".
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_VCPUS 64
static uint64_t counts[MAX_VCPUS];
static char out_path[4096];
static volatile int stop;
static pthread_t writer;

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    counts[vcpu_index % MAX_VCPUS] += (uintptr_t)udata;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

static void publish(void)
{
    char tmp[4160];
    uint64_t total = 0;
    for (int i = 0; i < MAX_VCPUS; i++)
        total += __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
    snprintf(tmp, sizeof(tmp), "%s.tmp", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%" PRIu64 "\n", total);
    fclose(f);
    rename(tmp, out_path);
}

static void *loop(void *arg)
{
    while (!stop) {
        publish();
        usleep(20000);
    }
    return NULL;
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    stop = 1;
    pthread_join(writer, NULL);
    publish();
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0)
            snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
    if (!out_path[0])
        return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return pthread_create(&writer, NULL, loop, NULL);
}
