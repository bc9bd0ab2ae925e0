package PT::LatencyProxy;

# A TCP relay of the harness's own that makes a near server far: every
# byte is passed on a fixed delay after it arrived, in each direction, so
# that a round trip through it costs twice the delay (25 ms each way: an
# RTT of 50 ms, Docker Hub from many places). It relays whatever runs on
# TCP (TLS included) and counts the connections it was asked for.
#
#   my $lp = PT::LatencyProxy->new(to => '127.0.0.1:8443', delay => 0.025)->start;
#   $lp->host;                # 127.0.0.1:PORT, where clients connect
#   my @c = $lp->requests;    # one { at } a connection, since the start
#   $lp->reset_requests;
#   $lp->stop;                # also done in DESTROY and at exit
#
# new(to => 'ADDR:PORT', delay => seconds (default 0.025), dir, port).

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time);

use parent 'PT::Server';

my $JSON = JSON::PP->new->utf8->canonical;


sub new {
    my ($class, %opt) = @_;

    croak "PT::LatencyProxy->new: to => 'ADDR:PORT'"
        unless ($opt{to} // '') =~ /^[\d.]+:\d+$/;

    my $self = bless {
        to => $opt{to},
        delay => $opt{delay} // 0.025,
        dir => $opt{dir} || tempdir('pt-latency-XXXXXXXX', TMPDIR => 1,
                                    CLEANUP => !$ENV{PT_KEEP}),
        port => $opt{port},
    }, $class;

    return $self->_track;
}

sub name { 'latency proxy' }


# one connection: to the server, then bytes both ways, each held for the
# delay; an end of data is passed on (as a half-close) after it too
sub _serve {
    my ($self, $c) = @_;

    open my $log, '>>', $self->log_file or die "log: $!";
    flock($log, LOCK_EX);
    print $log $JSON->encode({ at => time }), "\n";
    close $log;

    my $up = IO::Socket::INET->new(PeerAddr => $self->{to}, Proto => 'tcp')
        or return;

    my %peer = (fileno($c) => $up, fileno($up) => $c);
    my %queue = (fileno($c) => [], fileno($up) => []);   # to the peer of
    my %open = (fileno($c) => 1, fileno($up) => 1);       # reading from
    my %shut;                                             # written to

    while (%open || grep { @$_ } values %queue) {
        my $now = time;
        my $wait = 1;

        # what is due goes out
        for my $from (keys %queue) {
            my $q = $queue{$from};
            while (@$q && $q->[0][0] <= $now) {
                my (undef, $data) = @{ shift @$q };
                my $to = $peer{$from};
                if (!defined $data) {
                    shutdown($to, 1);
                    $shut{ fileno $to } = 1;
                    next;
                }
                my $off = 0;
                while ($off < length $data) {
                    my $n = syswrite($to, $data, length($data) - $off, $off);
                    return unless defined $n;
                    $off += $n;
                }
            }
            $wait = $q->[0][0] - $now if @$q && $q->[0][0] - $now < $wait;
        }

        last if !%open && !grep { @$_ } values %queue;

        my $rin = '';
        vec($rin, $_, 1) = 1 for keys %open;
        my $n = select(my $rout = $rin, undef, undef, $wait > 0 ? $wait : 0);
        next unless $n && $n > 0;

        for my $fd (keys %open) {
            next unless vec($rout, $fd, 1);
            my $from = $fd == fileno($c) ? $c : $up;
            my $r = sysread($from, my $buf, 65536);
            if (!$r) {
                delete $open{$fd};
                push @{ $queue{$fd} }, [ time + $self->{delay}, undef ];
                next;
            }
            push @{ $queue{$fd} }, [ time + $self->{delay}, $buf ];
        }
    }
}


1;
