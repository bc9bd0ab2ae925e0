package PT::Server;

# What the harness's own small servers (PT::FakeUpstream, PT::TokenIssuer)
# share: a listening socket, a server process forked by start() that forks
# again for each connection and calls $self->_serve($socket) there, stop()
# (also from DESTROY and at exit), and the request log, one JSON object a
# line in log_file, read by requests() from where reset_requests() left it.
#
# A subclass gives name() (for errors and the process title), _serve, and
# dir / addr / port in its object; it calls _track at new(). The accessors
# dir, port, addr (default 127.0.0.1), host (ADDR:PORT), url
# (http://ADDR:PORT) are PT::Server's; pid, is_running, restart, _track and
# the stop from DESTROY and at exit are PT::Child's (whose stop and watcher,
# for exec'd programs, a PT::Server does not use: its server ends itself
# when the test is gone).

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use parent 'PT::Child';

my $JSON = JSON::PP->new->utf8->canonical;


sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub addr { $_[0]{addr} // '127.0.0.1' }
sub host { $_[0]->addr . ":$_[0]{port}" }
sub url { 'http://' . $_[0]->host }
sub log_file { "$_[0]{dir}/requests.log" }


sub start {
    my ($self) = @_;

    my $name = $self->name;
    croak "the $name is already running" if $self->{pid};

    my $listen = IO::Socket::INET->new(
        LocalAddr => $self->addr,
        LocalPort => $self->{port} || 0,
        Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "$name: listen: $!";
    $self->{port} = $listen->sockport;

    my $parent = $$;
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        # the server and its connections in a group of their own: stop()
        # ends them all at once
        setpgrp(0, 0);
        (my $title = "pt-$name") =~ tr/ /-/;
        $0 = "$title $self->{port}";
        $SIG{CHLD} = 'IGNORE';
        $SIG{PIPE} = 'IGNORE';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        $SIG{INT} = 'IGNORE';
        $self->{owner} = 0;

        while (1) {
            POSIX::_exit(0) if getppid() != $parent;

            my $rin = '';
            vec($rin, fileno($listen), 1) = 1;
            my $n = select(my $rout = $rin, undef, undef, 0.5);
            next unless $n && $n > 0;

            my $c = $listen->accept or next;
            my $k = fork;
            if (defined $k && $k == 0) {
                close $listen;
                eval { $self->_serve($c) };
                POSIX::_exit(0);
            }
            close $c;
        }
    }

    close $listen;
    $self->{pid} = $pid;
    $self->{owner} = $$;

    return $self;
}


sub stop {
    my ($self) = @_;

    my $pid = $self->{pid} or return $self;
    return $self unless $self->{owner} && $self->{owner} == $$;

    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    my $deadline = time + 10;
    while (waitpid($pid, WNOHANG) != $pid) {
        if (time > $deadline) {
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            waitpid($pid, 0);
            last;
        }
        sleep 0.01;
    }
    $self->{pid} = undef;

    return $self;
}


# the requests logged since start (or reset_requests)

sub requests {
    my ($self) = @_;
    my @lines = $self->_log_lines;
    return map { $JSON->decode($_) } @lines[ ($self->{seen} // 0) .. $#lines ];
}

sub reset_requests {
    my ($self) = @_;
    $self->{seen} = () = $self->_log_lines;
    return $self;
}

sub _log_lines {
    my ($self) = @_;
    open my $fh, '<', $self->log_file or return ();
    flock($fh, LOCK_SH);
    local $/ = "\n";     # whatever the caller's $/ is: one record a line
    my @lines = <$fh>;
    close $fh;
    return @lines;
}


# a request head read from the connection $c (the connection's process
# exits when the client closes first, or sends over 1 MiB of head):
# { method, target (as sent), proto, path, query (of the target), headers
# (lowercase names, repeated ones joined with ", "), raw ([NAME, VALUE] as
# sent, in order), rest (the bytes read after the head) }
sub _read_head {
    my ($self, $c) = @_;

    my $buf = '';
    while ($buf !~ /\r?\n\r?\n/) {
        my $n = sysread($c, $buf, 65536, length $buf);
        POSIX::_exit(0) unless $n;
        POSIX::_exit(0) if length $buf > 1024 * 1024;
    }

    my ($head, $rest) = split /\r?\n\r?\n/, $buf, 2;
    my ($line, @lines) = split /\r?\n/, $head;
    my ($method, $target, $proto) = split / /, $line // '', 3;
    $target //= '/';
    my ($path, $query) = split /\?/, $target, 2;

    my (%h, @raw);
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        push @raw, [ $k, $v ];
        $h{ lc $k } = exists $h{ lc $k } ? "$h{ lc $k }, $v" : $v;
    }

    return { method => $method // '', target => $target, proto => $proto,
             path => $path, query => $query, headers => \%h, raw => \@raw,
             rest => $rest // '' };
}

1;
