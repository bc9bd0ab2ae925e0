package PT::Child;

# A process the test starts and stop() ends, also from DESTROY and at exit,
# and only in the process that started it (its owner): what the harness's
# wrappers of real servers (PT::Registry, PT::Tinyproxy) share, and the
# base of PT::Server (which has a start and stop of its own).
#
# A subclass gives name() (the program's name in messages and process
# titles), keeps pid and owner in its object and calls _track at new(). A
# program started with _spawn is watched, and ended by the stop here, for
# which the subclass gives timeout() (seconds to wait after SIGTERM before
# SIGKILL):
#
#   sub start {
#       ...
#       $self->_spawn(sub { open STDOUT, '>>', $log; ... }, $BIN, @args);
#       return $self if $self->_wait_ready;   # polls $self->_exited
#       ...
#   }
#
# API:
#   _track          at new(): the instance is stopped at exit (a weak
#                   reference) and in DESTROY, when its pid is set and
#                   owner is this process
#   pid, is_running, restart (stop then start)
#   _spawn(SETUP, CMD...)
#                   forks; the child reads /dev/null as its stdin, runs
#                   SETUP (redirections, environment) and execs CMD (exit
#                   127 when it cannot); the parent keeps the pid, itself
#                   as owner, and starts the watcher. Returns the pid.
#   _exited         true (and the process and its watcher forgotten, its
#                   wait status in exit_status) once the program has exited
#   stop            SIGTERM, then SIGKILL (with a diag) after timeout()
#                   seconds; nothing outside the owner process
#   _kill           SIGKILL now, reaped and forgotten
#   alive(PID)      a function: false once PID is gone or a zombie
#
# The watcher: a test killed by a signal (SIGPIPE from `prove ... | head`,
# SIGKILL from a timeout) runs no END block. So a watcher process
# ("pt-NAME-watch PID") holds the read end of a pipe whose write end only
# the test holds (close-on-exec: not even skopeo or nginx inherit it): EOF
# means the test is gone, and the watcher sends SIGTERM to the program,
# then SIGKILL if it is still there 5 s later. stop, _kill and _exited end
# the watcher first.

use strict;
use warnings;

use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

my @INSTANCES;          # weak references, for the END block


sub _track {
    my ($self) = @_;
    push @INSTANCES, $self;
    weaken($INSTANCES[-1]);
    return $self;
}


sub pid { $_[0]{pid} }
sub is_running { defined $_[0]{pid} }


sub _spawn {
    my ($self, $setup, @cmd) = @_;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        $setup->();
        { no warnings 'exec'; exec @cmd; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);    # no END blocks in the child
    }
    $self->{pid} = $pid;
    $self->{owner} = $$;      # forked children do not stop it
    $self->_watch;

    return $pid;
}


sub _exited {
    my ($self) = @_;
    return 0 unless waitpid($self->{pid}, WNOHANG) == $self->{pid};
    $self->{exit_status} = $?;
    $self->_unwatch;
    $self->{pid} = undef;
    return 1;
}


sub _watch {
    my ($self) = @_;

    my $target = $self->{pid};
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        close $w;
        $0 = 'pt-' . $self->name . "-watch $target";
        $SIG{$_} = 'IGNORE' for qw(INT TERM HUP PIPE);
        1 while !defined sysread($r, my $buf, 1) && $!{EINTR};
        kill 'TERM', $target;
        for (1 .. 250) {
            POSIX::_exit(0) unless alive($target);
            sleep 0.02;
        }
        kill 'KILL', $target;
        POSIX::_exit(0);
    }

    close $r;
    $self->{watch_pid} = $pid;
    $self->{watch_fh} = $w;
}


sub _unwatch {
    my ($self) = @_;
    my $pid = delete $self->{watch_pid} or return;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    close delete $self->{watch_fh};
}


# alive(PID): false once the process is gone or a zombie (orphans are not
# always reaped soon)
sub alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    local $/ = "\n";
    my $stat = <$fh> // '';
    return $stat !~ /^\d+ \(.*\) Z /s;
}


sub stop {
    my ($self) = @_;

    my $pid = $self->{pid} or return $self;
    return $self unless $self->{owner} && $self->{owner} == $$;
    $self->_unwatch;

    kill 'TERM', $pid;
    my $deadline = time + $self->timeout;
    while (waitpid($pid, WNOHANG) != $pid) {
        if (time > $deadline) {
            Test::More::diag($self->name . " $pid did not stop, killing it")
                if Test::More->can('diag');
            $self->_kill;
            return $self;
        }
        sleep 0.02;
    }
    $self->{exit_status} = $?;
    $self->{pid} = undef;

    return $self;
}


sub restart { $_[0]->stop->start }


sub _kill {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    $self->_unwatch;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    $self->{pid} = undef;
}


sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop if $self->{pid} && $self->{owner} == $$;
}


END {
    my $status = $?;
    for my $c (grep { defined } @INSTANCES) {
        $c->stop if $c->{pid} && $c->{owner} == $$;
    }
    $? = $status;
}

1;
