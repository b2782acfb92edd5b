// SPDX-License-Identifier: GPL-2.0
/*
 * Iron on a stock kernel: per-packet softirq accounting and early drop (dissertation §2.2).
 *
 * Accounting (tp_btf programs, only on the CPUs in cfg.cpu_mask, i.e. the containers' cores):
 *   - NET_RX: inside a softirq_entry/exit bracket (vec NET_RX) consecutive netif_receive_skb events
 *     bound each packet's cost; the last packet ends at softirq_exit. Hard-IRQ time nested inside the
 *     bracket is subtracted from the packet it interrupted.
 *   - Fixed overhead: the time from softirq_entry to the first packet is split evenly over the
 *     softirq's packets; the hard-IRQ time H that opened a window (irq_handler_entry/exit and the x86
 *     vectors local_timer, call_function[_single] (RPS IPI), reschedule, irq_work) is split as
 *     O_RX = H * S_RX / sum(S_i), evenly per packet of the window (a window runs from one hard-IRQ to
 *     the next; in §2.2.1's notation H_paper = H + sum(S_i), so O = H_paper - sum(S_i) = H).
 *   - NET_TX: the whole net_tx_action batch (softirq bracket, vec NET_TX) is split evenly over the
 *     packets handed to drivers in it (net_dev_start_xmit), by sending container.
 *   - Owner of a packet: the container whose network namespace holds skb->dev (netns inode); if the
 *     device is in no container's namespace (root-namespace bridge/NIC), the IPv4 destination
 *     (receive) / source (transmit) address table, then the other address.
 *   - Context: the container whose task was interrupted (cached at sched_switch). A packet processed
 *     in its owner's own context is already charged by CFS (no IRQ_TIME_ACCOUNTING) -> own_ns only.
 *     Otherwise it is charged to the owner and, if the interrupted task belongs to another container,
 *     credited to that one (gained). ksoftirqd / idle / host tasks are no container: no credit.
 *   - naive_ns: whole softirq duration charged to the interrupted container (baseline).
 * Enforcement (xdp / tc programs): a packet whose IPv4 destination is a container that has used
 *   its allocation for the current CFS period (CFS run time from sched_switch + Iron charges,
 *   compared with thresh = alloc * (1 - T%)), or that the controller forced, is dropped.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define MAX_SLOTS 32
#define UNOWNED MAX_SLOTS /* stats index for packets of no container */
#define NSLOTS (MAX_SLOTS + 1)
#define NO_CTX 0xffffffffu
#define VEC_NET_TX 2
#define VEC_NET_RX 3
#define ETH_P_IP_BE 0x0008 /* htons(0x0800) */
#define MAX_HARDIRQ_NS 5000000ULL   /* longer hard-IRQ "durations" are tracking errors */
#define MAX_COST_NS 100000000ULL    /* sanity bound of one packet's / share's cost */

char LICENSE[] SEC("license") = "GPL";

struct iron_cfg {
	__u64 cpu_mask;  /* CPUs whose softirqs are accounted */
	__u32 naive;     /* 1: naive attribution: the drop budget counts CFS time only */
	__u32 nslots;    /* slots 0..nslots-1 are in use (loops stop there, plus UNOWNED) */
	__u32 irq_extra_ns; /* per hard IRQ: entry/exit cost the tracepoints cannot see (calibrated) */
	__u32 timer_extra_ns; /* the same for local timer interrupts (calibrated apart: in a VM each one
			       * is delivered through the hypervisor, IPIs may be posted) */
	__u64 fn_qdisc_watchdog; /* kernel addresses of the network hrtimer callbacks (0: unknown) */
	__u64 fn_tcp_pace_kick;
};

struct ct_stats {
	__u64 charged_ns; /* cost of own packets processed outside own context (to charge) */
	__u64 gained_ns;  /* cost of others' packets processed in own context (to credit) */
	__u64 own_ns;     /* cost of own packets in own context (CFS already charged it) */
	__u64 rx_pkts;
	__u64 tx_pkts;
	__u64 rx_cost_ns; /* all receive cost of own packets (bracket + overhead share) */
	__u64 tx_cost_ns;
	__u64 ovh_ns;     /* part of rx/tx cost that is fixed overhead (entry gap, hard-IRQ share) */
	__u64 drops;
	__u64 naive_ns;   /* softirq time in own context, whoever the packets belonged to */
	__u64 run_ns;     /* on-CPU time of the container's tasks (sched_switch), as CFS sees it */
	__u64 sleeps;     /* voluntary switch-outs (demand-limited: Alg 2.7 cgroup_idled) */
	__u64 irqs;       /* hard IRQs taken while the container's task ran (calibration) */
	__u64 irq_ns;     /* their time (+ irq_extra_ns each); UNOWNED: H of windows without NET packets */
	__u64 preempts;   /* involuntary switch-outs (preempted while runnable) */
	__u64 timer_irqs; /* of irqs: local timer interrupts (calibration) */
};

struct budget_cfg { /* written by the controller */
	__s64 thresh_ns;  /* drop when used >= thresh (alloc * (1 - T%)); <= 0: never */
	__u64 period_ns;
	__u64 phase_ns;   /* CFS period timer phase: periods start at phase + k * period */
	__u32 force;      /* drop everything (debt exceeds a whole allocation) */
	__u32 active;
};

struct budget_use { /* written by BPF only */
	__u64 period_idx;
	__s64 used_ns;
};

struct cpu_state {
	__u64 s_start;
	__u64 last_ts;
	__u64 first_gap;
	__u64 nested;       /* hard-IRQ ns since the last packet event */
	__u64 nested_total; /* hard-IRQ ns inside the current softirq */
	__u64 h_start;
	__u64 run_start;    /* when the current task was switched in */
	__u64 win_h, win_s, win_s_rx, win_s_tx;
	__u32 in_sirq, vec, ctx, npk, last_owner, h_depth, cur_slot, cur_valid;
	/* h_timer: the outermost hard IRQ is the local timer; win_hctx: context that took the window's
	 * first IRQ */
	__u32 h_timer, win_nrx, win_ntx, win_hctx;
	__u32 last_rx_owner, last_tx_owner; /* owner of the newest packet per direction (+1; 0 = none) */
	__u32 win_timer_owner, sirq_timer_owner; /* a network hrtimer ran in the window / softirq (+1) */
	__u32 cur_cnt[NSLOTS];
	__u32 win_rx[NSLOTS];
	__u32 win_tx[NSLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iron_cfg);
} iron_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* netns inode */
	__type(value, __u32);
} netns_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* IPv4 address, network order */
	__type(value, __u32);
} ip_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64); /* kernfs id of the task's cpu-controller cgroup (= inode of the dir) */
	__type(value, __u32);
} cg_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSLOTS);
	__type(key, __u32);
	__type(value, struct ct_stats);
} ct_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct budget_cfg);
} budget_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct budget_use);
} budget_use SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} cpu_state SEC(".maps");

static __always_inline struct cpu_state *accounted_cpu(void)
{
	__u32 zero = 0;
	struct iron_cfg *cfg = bpf_map_lookup_elem(&iron_cfg, &zero);
	__u32 cpu = bpf_get_smp_processor_id();

	if (!cfg || cpu >= 64 || !(cfg->cpu_mask & (1ULL << cpu)))
		return 0;
	return bpf_map_lookup_elem(&cpu_state, &zero);
}

/* t is a BTF (trusted) pointer: direct, CO-RE relocated loads (no probe_read helper calls) */
static __always_inline __u32 task_slot(struct task_struct *t)
{
	int idx = bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id);
	__u64 id;
	__u32 *slot;

	id = t->cgroups->subsys[idx]->cgroup->kn->id;
	if (!id)
		return NO_CTX;
	slot = bpf_map_lookup_elem(&cg_slot, &id);
	return slot ? *slot : NO_CTX;
}

static __always_inline void budget_add(__u32 slot, __s64 ns, __u64 now)
{
	struct budget_cfg *bc;
	struct budget_use *bu;
	__u64 idx;

	if (slot >= MAX_SLOTS)
		return;
	bc = bpf_map_lookup_elem(&budget_cfg, &slot);
	bu = bpf_map_lookup_elem(&budget_use, &slot);
	if (!bc || !bu || !bc->active || !bc->period_ns)
		return;
	idx = (now - bc->phase_ns) / bc->period_ns;
	if (bu->period_idx != idx) {
		bu->period_idx = idx;
		bu->used_ns = 0;
	}
	__sync_fetch_and_add(&bu->used_ns, ns);
}

/* one packet's (or share's) cost: charge the owner, credit the interrupted container.
 * Atomic adds: a hardirq/softirq program can nest inside a process-context one on the same CPU,
 * and a plain += there loses the inner update (seen as charged_ns > rx_cost_ns + tx_cost_ns).
 * Global (non-inlined) functions are verified once, which keeps loading fast. */
#define F_RX 1
#define F_OVH 2
__noinline int account(__u32 owner, __u32 ctx, __u64 cost, __u32 flags)
{
	int rx = flags & F_RX, ovh = flags & F_OVH;

	if (cost > MAX_COST_NS) /* negative (clock/tracking anomaly) or absurd: drop it */
		return 0;
	struct ct_stats *st;
	__u32 zero = 0;
	struct iron_cfg *cfg;

	if (owner > UNOWNED)
		owner = UNOWNED;
	st = bpf_map_lookup_elem(&ct_stats, &owner);
	if (!st)
		return 0;
	if (rx)
		__sync_fetch_and_add(&st->rx_cost_ns, cost);
	else
		__sync_fetch_and_add(&st->tx_cost_ns, cost);
	if (ovh)
		__sync_fetch_and_add(&st->ovh_ns, cost);
	if (owner != UNOWNED) {
		if (ctx == owner) {
			__sync_fetch_and_add(&st->own_ns, cost);
			return 0;
		}
		__sync_fetch_and_add(&st->charged_ns, cost);
		cfg = bpf_map_lookup_elem(&iron_cfg, &zero);
		if (cfg && !cfg->naive)
			budget_add(owner, cost, bpf_ktime_get_ns());
	}
	/* others' (or host) packets processed in a container's context: credit it */
	if (ctx < MAX_SLOTS) {
		struct ct_stats *cst = bpf_map_lookup_elem(&ct_stats, &ctx);

		if (cst)
			__sync_fetch_and_add(&cst->gained_ns, cost);
	}
	return 0;
}

static __always_inline __u32 skb_owner(struct sk_buff *skb, int rx)
{
	struct iphdr iph;
	unsigned char *head;
	__u16 nh;
	__u32 inum, a, b, *slot;

	inum = skb->dev->nd_net.net->ns.inum;
	slot = bpf_map_lookup_elem(&netns_slot, &inum);
	if (slot)
		return *slot;
	if (skb->protocol != ETH_P_IP_BE)
		return UNOWNED;
	head = skb->head;
	nh = skb->network_header;
	if (bpf_probe_read_kernel(&iph, sizeof(iph), head + nh))
		return UNOWNED;
	a = rx ? iph.daddr : iph.saddr;
	b = rx ? iph.saddr : iph.daddr;
	slot = bpf_map_lookup_elem(&ip_slot, &a);
	if (slot)
		return *slot;
	slot = bpf_map_lookup_elem(&ip_slot, &b);
	return slot ? *slot : UNOWNED;
}

static __always_inline __u32 nslots(void)
{
	__u32 zero = 0;
	struct iron_cfg *cfg = bpf_map_lookup_elem(&iron_cfg, &zero);

	return cfg && cfg->nslots < MAX_SLOTS ? cfg->nslots : MAX_SLOTS;
}

static __always_inline struct cpu_state *this_cpu_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cpu_state, &zero);
}

/* split `total` over the counts of one of the per-CPU count arrays (n packets in all) */
#define CNT_CUR 0
#define CNT_WIN_RX 1
#define CNT_WIN_TX 2
__noinline int split(__u32 which, __u32 n, __u64 total, __u32 ctx, int rx)
{
	struct cpu_state *cs = this_cpu_state();
	__u32 lim = nslots();

	if (!cs || !n)
		return 0;
	for (int i = 0; i < NSLOTS; i++) {
		int s = i == lim ? UNOWNED : i;

		if (i > lim)
			break;
		__u32 c = which == CNT_CUR ? cs->cur_cnt[s] : which == CNT_WIN_RX ? cs->win_rx[s] : cs->win_tx[s];

		if (!c)
			continue;
		account(s, ctx, total * c / n, (rx ? F_RX : 0) | F_OVH);
	}
	return 0;
}

/* move the current softirq's counts into the window */
__noinline int merge_cur(int rx)
{
	struct cpu_state *cs = this_cpu_state();
	__u32 lim = nslots();

	if (!cs)
		return 0;
	for (int i = 0; i < NSLOTS; i++) {
		int s = i == lim ? UNOWNED : i;

		if (i > lim)
			break;
		__u32 c = cs->cur_cnt[s];

		if (!c)
			continue;
		if (rx)
			cs->win_rx[s] += c;
		else
			cs->win_tx[s] += c;
		cs->cur_cnt[s] = 0;
	}
	return 0;
}

__noinline int close_window(void)
{
	struct cpu_state *cs = this_cpu_state();
	__u64 h, sum, srx, stx;
	__u32 nrx, ntx, ctx;

	if (!cs)
		return 0;
	h = cs->win_h; sum = cs->win_s; srx = cs->win_s_rx; stx = cs->win_s_tx;
	/* H was paid by the task the IRQ interrupted, even when the softirq ran later elsewhere (ksoftirqd) */
	nrx = cs->win_nrx; ntx = cs->win_ntx; ctx = cs->win_hctx;
	if (h && sum) {
		if (nrx)
			split(CNT_WIN_RX, nrx, h * srx / sum, ctx, 1);
		if (ntx)
			split(CNT_WIN_TX, ntx, h * stx / sum, ctx, 0);
	}
	if (h && !(nrx && srx) && !(ntx && stx)) {
		__u32 towner = cs->win_timer_owner;

		if (towner) {
			/* the IRQ ran a network timer (HTB's watchdog, TCP pacing) that moved no packet yet */
			account(towner - 1, ctx, h, F_OVH);
		} else {
			/* no network work in the window (ticks, CFS period timers, other devices) */
			__u32 u = UNOWNED;
			struct ct_stats *ust = bpf_map_lookup_elem(&ct_stats, &u);

			if (ust)
				ust->irq_ns += h;
		}
	}
	cs = this_cpu_state();
	if (!cs)
		return 0;
	cs->win_timer_owner = 0;
	if (nrx || ntx) {
		__u32 lim = nslots();

		for (int i = 0; i < NSLOTS; i++) {
			int s = i == lim ? UNOWNED : i;

			if (i > lim)
				break;
			cs->win_rx[s] = 0;
			cs->win_tx[s] = 0;
		}
	}
	cs->win_h = cs->win_s = cs->win_s_rx = cs->win_s_tx = 0;
	cs->win_nrx = cs->win_ntx = 0;
	return 0;
}

static __always_inline __u64 irq_extra(__u32 timer)
{
	__u32 zero = 0;
	struct iron_cfg *cfg = bpf_map_lookup_elem(&iron_cfg, &zero);

	if (!cfg)
		return 0;
	return timer ? cfg->timer_extra_ns : cfg->irq_extra_ns;
}

static __always_inline void hardirq_enter(__u32 timer)
{
	struct cpu_state *cs = accounted_cpu();
	__u64 now;

	if (!cs)
		return;
	now = bpf_ktime_get_ns();
	if (cs->h_depth == 0 || cs->h_depth > 4) {
		cs->h_depth = 0;
		cs->h_start = now;
		cs->h_timer = timer;
		/* An IRQ nested in a softirq (an RPS IPI adding to the backlog being drained) belongs to that
		 * softirq's packets, which reach the window only at softirq_exit: keep the window open. */
		if (!cs->in_sirq) {
			close_window();
			cs->win_hctx = cs->cur_valid ? cs->cur_slot : UNOWNED;
		}
		if (cs->cur_valid && cs->cur_slot < MAX_SLOTS) {
			__u32 c = cs->cur_slot;
			struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &c);

			if (st) {
				st->irqs++;
				if (timer)
					st->timer_irqs++;
			}
		}
	}
	cs->h_depth++;
}

static __always_inline void hardirq_exit(void)
{
	struct cpu_state *cs = accounted_cpu();
	__u64 d, extra;

	if (!cs || cs->h_depth == 0)
		return;
	if (--cs->h_depth)
		return;
	d = bpf_ktime_get_ns() - cs->h_start;
	if (d > MAX_HARDIRQ_NS) /* unmatched entry (e.g. attached between entry and exit): ignore */
		return;
	extra = irq_extra(cs->h_timer);
	cs->win_h += d + extra;
	if (cs->cur_valid && cs->cur_slot < MAX_SLOTS) {
		__u32 c = cs->cur_slot;
		struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &c);

		if (st)
			st->irq_ns += d + extra;
	}
	if (cs->in_sirq) {
		cs->nested += d;
		cs->nested_total += d;
	}
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(iron_irq_entry, int irq, struct irqaction *action) { hardirq_enter(0); return 0; }
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(iron_irq_exit, int irq, struct irqaction *action, int ret) { hardirq_exit(); return 0; }
SEC("tp_btf/local_timer_entry")
int BPF_PROG(iron_timer_entry, int vector) { hardirq_enter(1); return 0; }
SEC("tp_btf/local_timer_exit")
int BPF_PROG(iron_timer_exit, int vector) { hardirq_exit(); return 0; }
SEC("tp_btf/call_function_single_entry")
int BPF_PROG(iron_cfs_entry, int vector) { hardirq_enter(0); return 0; }
SEC("tp_btf/call_function_single_exit")
int BPF_PROG(iron_cfs_exit, int vector) { hardirq_exit(); return 0; }
SEC("tp_btf/call_function_entry")
int BPF_PROG(iron_cf_entry, int vector) { hardirq_enter(0); return 0; }
SEC("tp_btf/call_function_exit")
int BPF_PROG(iron_cf_exit, int vector) { hardirq_exit(); return 0; }
SEC("tp_btf/reschedule_entry")
int BPF_PROG(iron_resched_entry, int vector) { hardirq_enter(0); return 0; }
SEC("tp_btf/reschedule_exit")
int BPF_PROG(iron_resched_exit, int vector) { hardirq_exit(); return 0; }
SEC("tp_btf/irq_work_entry")
int BPF_PROG(iron_irqwork_entry, int vector) { hardirq_enter(0); return 0; }
SEC("tp_btf/irq_work_exit")
int BPF_PROG(iron_irqwork_exit, int vector) { hardirq_exit(); return 0; }

/* Network hrtimers: HTB's watchdog (hard IRQ; raises NET_TX for the queued traffic of the newest
 * transmitting container) and TCP's pacing timer (soft; the socket's namespace names the owner). The
 * hard IRQ or soft hrtimer run that moved no packet is still that traffic's cost. */
SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(iron_hrtimer_entry, struct hrtimer *t, ktime_t *now)
{
	struct cpu_state *cs = accounted_cpu();
	struct iron_cfg *cfg;
	__u32 zero = 0, owner = NO_CTX;
	__u64 fn;

	if (!cs)
		return 0;
	cfg = bpf_map_lookup_elem(&iron_cfg, &zero);
	if (!cfg)
		return 0;
	fn = (__u64)t->function;
	if (!fn)
		return 0;
	if (fn == cfg->fn_tcp_pace_kick) {
		struct tcp_sock *tp = (void *)t - bpf_core_field_offset(struct tcp_sock, pacing_timer);
		__u32 inum = BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_net.net, ns.inum);
		__u32 *slot = bpf_map_lookup_elem(&netns_slot, &inum);

		if (slot)
			owner = *slot;
	} else if (fn == cfg->fn_qdisc_watchdog) {
		if (cs->last_tx_owner)
			owner = cs->last_tx_owner - 1;
	}
	if (owner >= NSLOTS)
		return 0;
	if (cs->h_depth)
		cs->win_timer_owner = owner + 1;
	else if (cs->in_sirq)
		cs->sirq_timer_owner = owner + 1;
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(iron_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct cpu_state *cs = accounted_cpu();
	__u64 now;
	__u32 ps;

	if (!cs)
		return 0;
	now = bpf_ktime_get_ns();
	ps = cs->cur_valid ? cs->cur_slot : task_slot(prev);
	if (ps < MAX_SLOTS && cs->run_start && now > cs->run_start) {
		struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &ps);

		if (st) {
			st->run_ns += now - cs->run_start;
			if (prev_state)
				st->sleeps++;
			else
				st->preempts++;
		}
		budget_add(ps, now - cs->run_start, now);
	}
	cs->run_start = now;
	cs->cur_slot = task_slot(next);
	cs->cur_valid = 1;
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(iron_softirq_entry, unsigned int vec)
{
	struct cpu_state *cs = accounted_cpu();

	if (!cs)
		return 0;
	cs->in_sirq = 1;
	cs->vec = vec;
	cs->s_start = bpf_ktime_get_ns();
	cs->nested = cs->nested_total = 0;
	cs->npk = 0;
	cs->last_ts = 0;
	cs->sirq_timer_owner = 0;
	if (!cs->cur_valid) {
		cs->cur_slot = task_slot((struct task_struct *)bpf_get_current_task_btf());
		cs->cur_valid = 1;
	}
	cs->ctx = cs->cur_slot;
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(iron_rx_skb, struct sk_buff *skb)
{
	struct cpu_state *cs = accounted_cpu();
	__u64 now;
	__u32 owner;

	if (!cs || !cs->in_sirq || cs->vec != VEC_NET_RX)
		return 0;
	now = bpf_ktime_get_ns();
	owner = skb_owner(skb, 1);
	if (cs->npk == 0)
		cs->first_gap = now - cs->s_start - cs->nested;
	else
		account(cs->last_owner, cs->ctx, now - cs->last_ts - cs->nested, F_RX);
	cs->nested = 0;
	cs->last_ts = now;
	cs->last_owner = owner;
	cs->npk++;
	if (owner < NSLOTS)
		cs->cur_cnt[owner]++;
	if (owner < MAX_SLOTS) {
		struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &owner);

		if (st)
			st->rx_pkts++;
	}
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(iron_tx_skb, struct sk_buff *skb, struct net_device *dev)
{
	struct cpu_state *cs = accounted_cpu();
	__u32 owner;

	/* transmits inside NET_RX (forwarding, ACKs sent by the receive path) belong to the received packet */
	if (!cs || !cs->in_sirq || cs->vec == VEC_NET_RX)
		return 0;
	owner = skb_owner(skb, 0);
	cs->last_owner = owner;
	cs->npk++;
	if (owner < NSLOTS)
		cs->cur_cnt[owner]++;
	if (owner < MAX_SLOTS) {
		struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &owner);

		if (st)
			st->tx_pkts++;
	}
	return 0;
}

static __always_inline void remember_owner(struct cpu_state *cs, int rx)
{
	/* cur_cnt holds this softirq's packets; the newest one's owner is last_owner (rx) or any (tx) */
	if (rx)
		cs->last_rx_owner = cs->last_owner + 1;
	else
		cs->last_tx_owner = cs->last_owner + 1;
}

/* an empty softirq of the direction: put one packet of the remembered owner into cur_cnt */
static __always_inline int blame_empty(struct cpu_state *cs, int rx)
{
	__u32 o = rx ? cs->last_rx_owner : cs->last_tx_owner;

	if (!o || o - 1 >= NSLOTS)
		return 0;
	o -= 1;
	cs->last_owner = o;
	cs->cur_cnt[o]++;
	return 1;
}

/* softirqs without packets: counted in the UNOWNED entry's rx_pkts / tx_pkts */
static __always_inline void empty_softirq(int rx)
{
	__u32 u = UNOWNED;
	struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &u);

	if (!st)
		return;
	if (rx)
		st->rx_pkts++;
	else
		st->tx_pkts++;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(iron_softirq_exit, unsigned int vec)
{
	struct cpu_state *cs = accounted_cpu();
	__u64 now, dur;
	__u32 n;

	if (!cs || !cs->in_sirq || cs->vec != vec)
		return 0;
	cs->in_sirq = 0;
	now = bpf_ktime_get_ns();
	dur = now - cs->s_start;
	dur = dur > cs->nested_total ? dur - cs->nested_total : 0;
	cs->win_s += dur;
	/* Other vectors count as transmit work when they handed packets to a driver: TCP small queues
	 * push a socket's data from a tasklet, TCP's timers retransmit from the timer softirq. */
	int net_work = vec == VEC_NET_RX || vec == VEC_NET_TX || cs->npk;
	__u32 towner = cs->sirq_timer_owner;

	cs->sirq_timer_owner = 0;
	if (!net_work && !towner)
		return 0;
	if (cs->ctx < MAX_SLOTS) {
		__u32 c = cs->ctx;
		struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &c);

		if (st)
			st->naive_ns += dur;
	}
	if (!net_work) { /* a network soft hrtimer (TCP pacing) that moved no packet to a driver */
		/* The hard IRQ that raised this softirq expired no network timer itself (soft timers run
		 * here), but it fired for this one: the window's H is the same traffic's cost. */
		if (!cs->win_timer_owner)
			cs->win_timer_owner = towner;
		account(towner - 1, cs->ctx, dur, F_OVH);
		return 0;
	}
	n = cs->npk;
	if (n)
		remember_owner(cs, vec == VEC_NET_RX);
	else if ((vec == VEC_NET_RX || vec == VEC_NET_TX) && blame_empty(cs, vec == VEC_NET_RX)) {
		/* A NET softirq that found no packet (the HTB watchdog with nothing eligible yet, a completion
		 * run, a poll after another softirq drained the backlog) is a consequence of the recent traffic:
		 * book it as one packet of the newest packet's owner in this direction, window share included. */
		empty_softirq(vec == VEC_NET_RX);
		n = cs->npk = 1;
		cs->first_gap = dur;
		cs->last_ts = now;
		cs->nested = 0;
	}
	if (vec == VEC_NET_RX) {
		cs->win_s_rx += dur;
		if (n) {
			account(cs->last_owner, cs->ctx, now - cs->last_ts - cs->nested, F_RX);
			split(CNT_CUR, n, cs->first_gap, cs->ctx, 1);
		} else {
			empty_softirq(1);
			account(UNOWNED, cs->ctx, dur, F_RX | F_OVH);
		}
	} else {
		cs->win_s_tx += dur;
		if (n)
			split(CNT_CUR, n, dur, cs->ctx, 0);
		else {
			empty_softirq(0);
			account(UNOWNED, cs->ctx, dur, F_OVH);
		}
	}
	if (n) {
		merge_cur(vec == VEC_NET_RX);
		if (vec == VEC_NET_RX)
			cs->win_nrx += n;
		else
			cs->win_ntx += n;
	}
	cs->npk = 0;
	return 0;
}

/* ---- enforcement ---- */

static __always_inline int should_drop(__u32 daddr)
{
	__u32 *slot = bpf_map_lookup_elem(&ip_slot, &daddr);
	struct budget_cfg *bc;
	struct budget_use *bu;
	__u32 s;
	int drop = 0;

	if (!slot)
		return 0;
	s = *slot;
	bc = bpf_map_lookup_elem(&budget_cfg, &s);
	bu = bpf_map_lookup_elem(&budget_use, &s);
	if (!bc || !bu || !bc->active)
		return 0;
	if (bc->force)
		drop = 1;
	else if (bc->thresh_ns > 0 && bc->period_ns &&
		 bu->period_idx == (bpf_ktime_get_ns() - bc->phase_ns) / bc->period_ns &&
		 bu->used_ns >= bc->thresh_ns)
		drop = 1;
	if (drop) {
		struct ct_stats *st = bpf_map_lookup_elem(&ct_stats, &s);

		if (st)
			st->drops++;
	}
	return drop;
}

SEC("xdp")
int iron_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);

	if ((void *)(iph + 1) > end || eth->h_proto != ETH_P_IP_BE)
		return XDP_PASS;
	return should_drop(iph->daddr) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int iron_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);

	if ((void *)(iph + 1) > end || eth->h_proto != ETH_P_IP_BE)
		return 0; /* TC_ACT_OK / TCX_PASS */
	return should_drop(iph->daddr) ? 2 /* TC_ACT_SHOT / TCX_DROP */ : 0;
}
