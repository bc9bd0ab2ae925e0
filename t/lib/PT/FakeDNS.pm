package PT::FakeDNS;

# A DNS server of the harness's own, for nginx's resolver: upstreams named
# by a host name (registry.test) without touching the machine's resolver.
# It answers A queries for the names in its map, NXDOMAIN for other names,
# and an empty answer for other types (AAAA: nginx asks for them unless
# "ipv6=off").
#
#   my $dns = PT::FakeDNS->new(map => { 'registry.test' => '127.0.0.1' })->start;
#   "resolver " . $dns->host . " ipv6=off valid=1s;"   # in nginx.conf
#   my @q = $dns->queries;     # ("registry.test A", ...), since the start
#   $dns->stop;                # also done in DESTROY and at exit
#
# new(map => { NAME => IPV4 }, ttl => seconds (default 60)).

use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use File::Temp qw(tempdir);

use parent 'PT::Server';


sub new {
    my ($class, %o) = @_;

    my $self = bless {
        map => { map { lc($_) => $o{map}{$_} } keys %{ $o{map} || {} } },
        ttl => $o{ttl} // 60,
        dir => tempdir('pt-dns-XXXXXXXX', TMPDIR => 1, CLEANUP => 1),
    }, $class;

    return $self->_track;
}

sub name { 'fake dns' }
sub host { '127.0.0.1:' . $_[0]{port} }


sub start {
    my ($self) = @_;

    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'udp')
        or die "fake dns: $!";
    $self->{port} = $sock->sockport;

    my $parent = $$;
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        setpgrp(0, 0);
        $0 = "pt-fake-dns $self->{port}";
        $SIG{TERM} = sub { POSIX::_exit(0) };
        $self->{owner} = 0;

        while (1) {
            POSIX::_exit(0) if getppid() != $parent;

            my $rin = '';
            vec($rin, fileno($sock), 1) = 1;
            next unless select(my $rout = $rin, undef, undef, 0.5);

            my $from = $sock->recv(my $query, 512) // next;
            my ($answer, $q) = $self->_answer($query);
            next unless defined $answer;
            $sock->send($answer, 0, $from);

            open my $log, '>>', $self->log_file or next;
            print $log "$q\n";
            close $log;
        }
    }

    close $sock;
    $self->{pid} = $pid;
    $self->{owner} = $$;

    return $self;
}


# the reply to a query: (packet, "NAME TYPE"), or () for garbage
sub _answer {
    my ($self, $query) = @_;

    return () if length $query < 17;

    my ($id, $flags, $qd) = unpack 'n n n', $query;
    return () if $qd != 1;

    my ($pos, @labels) = (12);
    while (1) {
        my $len = ord substr($query, $pos, 1);
        last if $len == 0;
        return () if $len > 63 || $pos + 1 + $len > length $query;
        push @labels, substr($query, $pos + 1, $len);
        $pos += 1 + $len;
    }
    my $end = $pos + 5;
    return () if $end > length $query;

    my ($type, $class) = unpack 'n n', substr($query, $pos + 1, 4);
    my $name = lc join '.', @labels;
    my $question = substr($query, 12, $end - 12);
    my $addr = $self->{map}{$name};
    my $rd = $flags & 0x0100;

    my $rcode = defined $addr ? 0 : 3;
    my @answers;

    if (defined $addr && $type == 1 && $class == 1) {
        push @answers, pack('n n n N n', 0xc00c, 1, 1, $self->{ttl}, 4)
                       . pack('C4', split /\./, $addr);
    }

    my $header = pack 'n n n n n n', $id, 0x8080 | $rd | $rcode, 1,
                      scalar @answers, 0, 0;

    return ($header . $question . join('', @answers),
            "$name " . ($type == 1 ? 'A' : $type == 28 ? 'AAAA' : $type));
}


# the questions asked so far: ("NAME TYPE", ...)
sub queries {
    my ($self) = @_;
    open my $fh, '<', $self->log_file or return ();
    chomp(my @q = <$fh>);
    return @q;
}


1;
