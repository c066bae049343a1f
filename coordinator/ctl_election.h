/*
 * ctl_election.h: `dispatchctl election`: show a cluster's election as
 * ZooKeeper has it (members in sequence order, who leads, the epoch), read
 * straight from ZooKeeper so it works with no member running.
 */
#ifndef DSP_CTL_ELECTION_H
#define DSP_CTL_ELECTION_H

/* argv[0] is "election". Returns the exit code: 0, 1 error, 2 usage. */
int dsp_ctl_election_main(int argc, char **argv);

#endif
