package PT::Stunnel;

# A TLS front for a plain TCP server of the tests: Debian's stunnel (the
# stunnel4 package), so that an https:// forward proxy is a real one
# (tinyproxy behind stunnel) rather than a fake.
#
#   my $tls = PT::Stunnel->new(cert => $srv->{cert}, key => $srv->{key},
#                              connect => $px->port)->start;
#   $tls->url;             # https://127.0.0.1:PORT
#   $tls->stop;            # also done in DESTROY and at exit
#
# new(%opt):
#   cert, key  => FILE     the server certificate and key (PEM)
#   connect    => PORT     where the decrypted stream goes (127.0.0.1)
#   dir        => DIR      stunnel.conf and stunnel.log (default: a temp dir)
#   port       => N        the TLS port (default: a free one)
#
# stunnel runs in the foreground (foreground = yes), without a pid file,
# logging to stunnel.log; it is ready when its port accepts connections.
#
# Tests run need_tools('stunnel') first.
#
# Environment: PT_STUNNEL_BIN (default /usr/bin/stunnel4).

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

use parent 'PT::Child';
use PT::Util qw(slurp spew free_port missing_tools declare_tool);

our $BIN = $ENV{PT_STUNNEL_BIN} || '/usr/bin/stunnel4';
declare_tool('stunnel', 'stunnel4', $BIN);
our $TIMEOUT = 10;


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(cert key connect dir port);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::Stunnel->new: unknown option(s) @bad" if @bad;
    # tests skip with need_tools('stunnel'): this is a safety net
    if (my $why = missing_tools('stunnel')) {
        croak "PT::Stunnel: $why; set PT_STUNNEL_BIN";
    }
    croak "PT::Stunnel->new: cert, key and connect are needed"
        unless $opt{cert} && -f $opt{cert} && $opt{key} && -f $opt{key}
            && $opt{connect};

    my $self = bless {
        dir     => $opt{dir} || tempdir('pt-stunnel-XXXXXXXX', TMPDIR => 1,
                                        CLEANUP => !$ENV{PT_KEEP}),
        port    => $opt{port} || free_port(),
        cert    => $opt{cert},
        key     => $opt{key},
        connect => $opt{connect},
    }, $class;

    return $self->_track;
}


sub name { 'stunnel' }
sub timeout { $TIMEOUT }
sub port { $_[0]{port} }
sub url { 'https://127.0.0.1:' . $_[0]{port} }
sub log_file { "$_[0]{dir}/stunnel.log" }


sub start {
    my ($self) = @_;

    croak "stunnel is already running" if $self->{pid};

    my $conf = "$self->{dir}/stunnel.conf";
    spew($conf, <<"EOF");
foreground = yes
pid =
output = $self->{dir}/stunnel.log
debug = notice

[proxy]
accept = 127.0.0.1:$self->{port}
connect = 127.0.0.1:$self->{connect}
cert = $self->{cert}
key = $self->{key}
EOF

    my $log = $self->log_file;
    $self->_spawn(sub {
        open STDOUT, '>>', "$log.out";
        open STDERR, '>&', \*STDOUT;
    }, $BIN, $conf);

    my $deadline = time + $TIMEOUT;
    while (time < $deadline) {
        if ($self->_exited) {
            die "stunnel exited:\n" . (-e $log ? slurp($log) : '')
                . (-e "$log.out" ? slurp("$log.out") : '');
        }
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->{port},
                                      Proto => 'tcp', Timeout => 1);
        if ($s) {
            close $s;
            return $self;
        }
        sleep 0.02;
    }

    $self->stop;
    die "stunnel did not listen on $self->{port} in $TIMEOUT s\n";
}


1;
